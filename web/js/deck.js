// The column of upcoming images. Key presses only ever take the first item, and a
// refill only appends items never seen in this page, so a late refill cannot reorder,
// duplicate or swap the image under the annotator's finger.

export const MAX_ITEMS = 20;
const REFILL_BELOW = 12;
const PRELOAD_FULL = 3;

export function safeImageUrl(url) {
  if (typeof url !== "string") return "";
  if (url.startsWith("/api/items/")) return url;
  try {
    const parsed = new URL(url);
    return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : "";
  } catch {
    return "";
  }
}

export class Deck {
  constructor({ fetchItems, onChange }) {
    this.fetchItems = fetchItems;
    this.onChange = onChange;
    this.items = [];
    this.seen = new Set();
    this.refilling = null;
    this.preloaded = new Map();
  }

  get current() { return this.items[0] || null; }

  take() {
    const item = this.items.shift() || null;
    this.changed();
    return item;
  }

  putBack(item) {
    this.items.unshift(item);
    this.changed();
  }

  changed() {
    this.preload();
    this.onChange(this);
    if (this.items.length < REFILL_BELOW) this.refill();
  }

  // Thumbnails are in the column already; full images of the next few are fetched now
  // so that zooming is instant too.
  preload() {
    const wanted = new Set();
    for (const item of this.items.slice(0, PRELOAD_FULL)) {
      const url = safeImageUrl(item.image_url);
      if (!url) continue;
      wanted.add(url);
      if (!this.preloaded.has(url)) {
        const img = new Image();
        img.decoding = "async";
        img.src = url;
        this.preloaded.set(url, img);
      }
    }
    for (const url of this.preloaded.keys()) if (!wanted.has(url)) this.preloaded.delete(url);
  }

  refill() {
    if (this.refilling) return this.refilling;
    const room = MAX_ITEMS - this.items.length;
    if (room <= 0) return Promise.resolve();
    const held = this.items.map((item) => item.id);
    this.refilling = this.fetchItems(room, held)
      .then((items) => {
        let added = 0;
        for (const item of items) {
          if (this.seen.has(item.id) || this.items.length >= MAX_ITEMS) continue;
          this.seen.add(item.id);
          this.items.push(item);
          added += 1;
        }
        return added;
      })
      .finally(() => { this.refilling = null; })
      .then((added) => { if (added) { this.preload(); this.onChange(this); } return added; });
    return this.refilling;
  }
}
