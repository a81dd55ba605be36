// The annotator's progress today in this browser: answers given and the pace while
// working (a pause of more than BREAK_MS between two answers counts as a break, not as
// slow work), kept in localStorage so that a reload keeps it.

const KEY = "hitl.progress.v1";
const BREAK_MS = 5 * 60 * 1000;

function today(now) {
  const d = new Date(now);
  return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
}

export class Progress {
  constructor({ storage = window.localStorage } = {}) {
    this.storage = storage;
    this.key = KEY;
    this.day = { date: "", answers: 0, activeMs: 0, lastAt: 0 };
  }

  useAnnotator(name) {
    this.key = `${KEY}.${name}`;
    try {
      const day = JSON.parse(this.storage.getItem(this.key) || "null");
      if (day && typeof day.answers === "number") this.day = day;
    } catch { /* start afresh */ }
    this.roll(Date.now());
  }

  roll(now) {
    if (this.day.date !== today(now)) this.day = { date: today(now), answers: 0, activeMs: 0, lastAt: 0 };
  }

  save() {
    try { this.storage.setItem(this.key, JSON.stringify(this.day)); } catch { /* display only */ }
  }

  // One more answer (delta 1), or one withdrawn (delta -1), at `now`.
  count(delta, now = Date.now()) {
    this.roll(now);
    if (delta > 0) {
      if (this.day.lastAt) this.day.activeMs += Math.min(now - this.day.lastAt, BREAK_MS);
      this.day.lastAt = now;
    }
    this.day.answers = Math.max(0, this.day.answers + delta);
    this.save();
  }

  // "Today: 42 answers, about 310 an hour".
  words(now = Date.now()) {
    this.roll(now);
    const n = this.day.answers;
    if (!n) return "Today: no answers yet.";
    const answers = `Today: ${n.toLocaleString("en")} answer${n === 1 ? "" : "s"}`;
    // At least a minute of work, so that the first answers do not read as thousands an hour.
    if (n < 5) return `${answers}.`;
    const hours = Math.max(this.day.activeMs, 60000) / 3600000;
    return `${answers}, about ${Math.round(n / hours).toLocaleString("en")} an hour.`;
  }
}
