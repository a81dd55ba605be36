// Numbers and durations in the words the panel uses.

export function percent(x) {
  return typeof x === "number" && isFinite(x) ? x.toFixed(2) : "–";
}

export function eta(extraction) {
  if (!extraction || !extraction.pending) return "";
  const n = extraction.pending.toLocaleString("en");
  const images = `${n} image${extraction.pending === 1 ? "" : "s"}`;
  const s = extraction.eta_seconds;
  if (!(s >= 0)) return `Preparing ${images}; working out how long that takes…`;
  if (s < 60) return `Preparing ${images}: less than a minute left.`;
  if (s < 3600) {
    const m = Math.round(s / 60);
    return `Preparing ${images}: about ${m} minute${m === 1 ? "" : "s"} left.`;
  }
  if (s < 2 * 3600) return `Preparing ${images}: about an hour left. Keep labelling meanwhile, or take a coffee break.`;
  if (s < 24 * 3600) {
    return `Preparing ${images}: about ${Math.round(s / 3600)} hours left. Labelling works meanwhile; the model gets better as more images are ready.`;
  }
  return `Preparing ${images}: more than a day at this pace. Labelling works meanwhile; a faster feature service would shorten this.`;
}

export function perHour(count, startedAt, now = Date.now()) {
  if (!count || !startedAt) return "–";
  // At least a minute of history, so that the first labels do not read as thousands/hour.
  const hours = Math.max(now - startedAt, 60000) / 3600000;
  return `${Math.round(count / hours).toLocaleString("en")} / hour`;
}

export function strategyName(strategy) {
  return { cold_start: "cold start", uncertain: "uncertain", outlier: "outlier", random: "random", gold: "gold", review: "review" }[strategy] || "unknown";
}

export function withArticle(name) {
  return (/^[aeiou]/.test(name) ? "an " : "a ") + name;
}
