// The check-image notice: after a wrong answer on a gold item, a line under the image
// (never a dialog: the next image stays answerable) offers to fix the answer, which
// withdraws it and records the other one.

import { withArticle } from "./wording.js";

const $ = (id) => document.getElementById(id);

export class CheckNotice {
  // `fix(annotation, item)` replaces the answer by the other one.
  constructor({ fix }) {
    this.fixAnswer = fix;
    this.current = null;
    $("notice-keep").addEventListener("click", () => this.hide());
    $("notice-fix").addEventListener("click", () => this.fix());
  }

  // Whether the notice is about this annotation.
  about(annotationId) { return Boolean(this.current && this.current.annotation.id === annotationId); }

  show(op, check, task) {
    this.current = { annotation: op.body, item: op.item, check };
    const thing = withArticle(task);
    const known = `known ${check.known_label === "positive" ? "" : "not "}to show ${thing}`;
    const answered = op.body.label === "positive" ? `shows ${thing}` : `does not show ${thing}`;
    $("notice-text").textContent = `Check image: this one is ${known}; you answered that it ${answered}.`;
    $("notice").hidden = false;
  }

  hide() {
    this.current = null;
    $("notice").hidden = true;
  }

  fix() {
    const notice = this.current;
    if (!notice) return;
    this.hide();
    this.fixAnswer(notice.annotation, notice.item);
  }
}
