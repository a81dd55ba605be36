// What the annotator answered: new answers, undo, and changing one of the recent answers
// (the strip under the image). Every change goes through the outbox as the withdrawal of
// the old annotation (by its client id) followed by the new one (with its own), in order,
// so each is recorded exactly once whatever is retried or reloaded in between.

import { newId } from "./api.js";
import { History } from "./history.js";
import { Progress } from "./progress.js";
import { answerWord, hideChanging, renderStrip, showChanging } from "./recent.js";

const $ = (id) => document.getElementById(id);

function annotation(value, note, durationMs, itemId) {
  const body = { id: newId(), item_id: itemId, label: value, duration_ms: durationMs,
                 given_at: new Date().toISOString() };
  if (note) body.note = note;
  return body;
}

export class Answers {
  // `outbox` delivers; `said(value, note)` words an answer; `restage()` shows the column's
  // first image again; `task()` names what is asked about.
  constructor({ outbox, said, restage, task }) {
    Object.assign(this, { outbox, said, restage, task });
    this.history = new History();
    this.progress = new Progress();
    this.changing = null;  // the history entry the next answer replaces
    this.notice = null;    // the check notice, told when its answer is replaced
    this.onPick = (position) => this.start(position);  // a click on the strip
  }

  useAnnotator(name) {
    this.history.useAnnotator(name);
    this.progress.useAnnotator(name);
    this.render();
  }

  give(item, value, note, durationMs) {
    const body = annotation(value, note, durationMs, item.id);
    this.history.push(body, item);
    this.progress.count(1);
    this.outbox.push({ kind: "add", body, item });
    $("last").textContent = this.said(value, note);
    this.render();
  }

  withdraw(id) {
    if (!this.outbox.cancelAdd(id)) this.outbox.push({ kind: "undo", id });
    if (this.notice && this.notice.about(id)) this.notice.hide();
  }

  replace(old, value, note, item) {
    const body = annotation(value, note, old.duration_ms || 0, old.item_id);
    this.withdraw(old.id);
    this.outbox.push({ kind: "add", body, item });
    this.history.replace(old.id, body);
    this.render();
    return body;
  }

  // The answer to the earlier image on the stage.
  change(value, note) {
    const entry = this.changing;
    this.stop();
    const old = entry.annotation;
    if (old.label === value && (old.note || "") === note) {
      $("last").textContent = "Answer kept.";
      return;
    }
    this.replace(old, value, note, entry.item);
    $("last").textContent = `Changed from ${answerWord(old.label)}: ${this.said(value, note)}`;
  }

  // Puts the answer at `position` (1: the latest) on the stage to be answered again.
  start(position) {
    const entry = this.history.recent()[position - 1];
    if (!entry) return false;
    this.changing = entry;
    showChanging(entry, this.task());
    this.render();
    return true;
  }

  stop() {
    if (!this.changing) return;
    this.changing = null;
    hideChanging();
    this.restage();
    this.render();
  }

  // Withdraws the latest answer; returns its item (to be shown again), or null.
  undo() {
    const last = this.history.pop();
    if (!last) return null;
    this.withdraw(last.annotation.id);
    this.progress.count(-1);
    $("last").textContent = "Undone: the image is back.";
    this.render();
    return last.item;
  }

  render() {
    renderStrip(this.history.recent(), this.changing && this.changing.annotation.id,
                this.onPick);
    $("progress").textContent = this.progress.words();
  }
}
