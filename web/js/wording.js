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

// The live estimate: "0.91 (0.84–0.96)".
export function withInterval(value, low, high) {
  return `${percent(value)} (${percent(low)}–${percent(high)})`;
}

// What the estimate rests on, in words.
export function restsOn(estimate) {
  if (!estimate) return "–";
  const n = estimate.labels.toLocaleString("en");
  return estimate.source === "validation"
    ? `${n} verified labels`
    : `${n} check answer${estimate.labels === 1 ? "" : "s"}`;
}

// Where the model stands against the target, from the estimate's interval.
export function targetWords(estimate, target) {
  const t = percent(target);
  if (!estimate) return `target ${t}: no estimate yet`;
  if (estimate.f1_low >= target) return `target ${t} reached: the whole interval is above it`;
  if (estimate.f1 >= target) return `target ${t} probably reached; more answers will tell`;
  return `target ${t}: ${percent(target - estimate.f1)} to go`;
}

// The stopping forecast: "about 120 more labels (60–300)".
export function forecastWords(forecast) {
  if (!forecast) return "";
  if (forecast.reached) return "The target is reached.";
  const round = (x) => Math.max(0, Math.round(x)).toLocaleString("en");
  const low = round(forecast.low);
  const high = forecast.high === null ? "more than the curve can tell" : round(forecast.high);
  if (forecast.labels === null) return `The learning curve cannot tell yet how many more labels the target needs (at least ${low}).`;
  return `About ${round(forecast.labels)} more labels to the target (80% interval: ${low} to ${high}).`;
}

export function withArticle(name) {
  return (/^[aeiou]/.test(name) ? "an " : "a ") + name;
}
