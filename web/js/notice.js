// The check-image notice: after a wrong answer on a gold item, a line under the image
// (never a dialog: the next image stays answerable) offers to fix the answer, which
// withdraws it and records the other one.

import { newId } from "./api.js";
import { withArticle } from "./wording.js";

const $ = (id) => document.getElementById(id);

export class CheckNotice {
  // `push(op)` queues an outbox operation; `replaced(oldId, annotation)` updates the
  // page's undo history.
  constructor({ push, replaced }) {
    this.push = push;
    this.replaced = replaced;
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
    const fixed = { id: newId(), item_id: notice.annotation.item_id,
                    label: notice.annotation.label === "positive" ? "negative" : "positive",
                    duration_ms: notice.annotation.duration_ms };
    this.push({ kind: "undo", id: notice.annotation.id });
    this.push({ kind: "add", body: fixed, item: notice.item });
    this.replaced(notice.annotation.id, fixed);
    $("last").textContent = "Fixed.";
  }
}
