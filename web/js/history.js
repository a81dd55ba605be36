// The annotator's recent answers, newest last, kept in localStorage (one list per
// annotator) so that undo and "change an answer" survive a reload. Each entry is the
// annotation as sent (with its client id, which is what an undo names) and the item it
// answered (for its image).

const KEY = "hitl.history.v1";
// Entries kept for undo; the strip shows the newest STRIP of them.
const KEEP = 50;
export const STRIP = 8;

export class History {
  constructor({ storage = window.localStorage } = {}) {
    this.storage = storage;
    this.key = KEY;
    this.entries = [];
  }

  useAnnotator(name) {
    this.key = `${KEY}.${name}`;
    try {
      const entries = JSON.parse(this.storage.getItem(this.key) || "[]");
      this.entries = Array.isArray(entries) ? entries.filter((e) => e && e.annotation && e.item) : [];
    } catch {
      this.entries = [];
    }
  }

  save() {
    try {
      this.storage.setItem(this.key, JSON.stringify(this.entries.slice(-KEEP)));
    } catch { /* a full storage loses only the look back, never a label (the outbox) */ }
  }

  push(annotation, item) {
    // Only what the strip and an undo need: never anything that could tell a check apart.
    const { id, thumbnail_url, image_url, detector } = item;
    this.entries.push({ annotation, item: { id, thumbnail_url, image_url, detector }, changed: false });
    this.entries = this.entries.slice(-KEEP);
    this.save();
  }

  pop() {
    const last = this.entries.pop() || null;
    this.save();
    return last;
  }

  find(annotationId) {
    return this.entries.find((e) => e.annotation.id === annotationId) || null;
  }

  // The newest `STRIP` entries, newest first (position 1 is the last answer).
  recent() {
    return this.entries.slice(-STRIP).reverse();
  }

  replace(oldId, annotation) {
    const entry = this.find(oldId);
    if (!entry) return null;
    entry.annotation = annotation;
    entry.changed = true;
    this.save();
    return entry;
  }
}
