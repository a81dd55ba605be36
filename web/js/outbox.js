// Labels and undos waiting to reach the server, kept in localStorage so that a closed
// tab, a stopped gateway or a restarting trainer loses nothing. Operations are sent one
// at a time, in order; an annotation carries its client id, so a retry after a lost
// answer is recorded once.

const KEY = "hitl.outbox.v1";

// Each task's page keeps a queue of its own: a label is only ever delivered to the task
// it was given in.
export function queueKey(task) {
  return task ? `${KEY}:${task}` : KEY;
}
const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 10000;

export class Outbox {
  constructor({ send, onDelivered, onFailed, onChange, storage = window.localStorage, key = KEY }) {
    this.key = this.base = key;
    this.send = send;
    this.onDelivered = onDelivered;
    this.onFailed = onFailed;
    this.onChange = onChange;
    this.storage = storage;
    this.ops = this.load();
    this.inflight = null;
    this.timer = null;
    this.backoff = MIN_BACKOFF_MS;
    this.lastError = null;
  }

  load() {
    try {
      const ops = JSON.parse(this.storage.getItem(this.key) || "[]");
      return Array.isArray(ops) ? ops : [];
    } catch {
      return [];
    }
  }

  save() {
    this.storage.setItem(this.key, JSON.stringify(this.ops));
    this.onChange(this);
  }

  get pending() { return this.ops.length; }

  // Each signed-in annotator has a queue of their own in this browser, so that labels
  // one of them queued are never delivered under another's name: they wait for that
  // annotator to sign in here again. Called before anything is sent.
  useQueue(name) {
    const key = `${this.base}.${name}`;
    if (key === this.key) return;
    this.key = key;
    this.ops = this.load();
    this.onChange(this);
  }

  push(op) {
    this.ops.push(op);
    this.save();
    this.kick();
  }

  // Drops an annotation that has not left the browser yet; false once it is in flight.
  cancelAdd(id) {
    const index = this.ops.findIndex((op) => op.kind === "add" && op.body.id === id && op !== this.inflight);
    if (index < 0) return false;
    this.ops.splice(index, 1);
    this.save();
    return true;
  }

  retryNow() {
    clearTimeout(this.timer);
    this.timer = null;
    this.backoff = MIN_BACKOFF_MS;
    this.kick();
  }

  async kick() {
    if (this.inflight || this.timer || this.ops.length === 0) return;
    const op = (this.inflight = this.ops[0]);
    try {
      const result = await this.send(op);
      this.ops.shift();
      this.backoff = MIN_BACKOFF_MS;
      this.lastError = null;
      this.save();
      this.onDelivered(op, result);
    } catch (err) {
      if (err.retryable) {
        this.lastError = err;
        this.onChange(this);
        this.timer = setTimeout(() => { this.timer = null; this.kick(); }, this.backoff);
        this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
        return;
      }
      this.ops.shift();
      this.save();
      this.onFailed(op, err);
    } finally {
      this.inflight = null;
    }
    this.kick();
  }
}
