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

function plural(n, word) {
  return `${n.toLocaleString("en")} ${word}${n === 1 ? "" : "s"}`;
}

// Where the model stands against the target. "Reached" is the trainer's word alone
// (forecast.reached: the interval above the target, on enough answers), so that this line,
// the forecast and the banner never disagree.
export function targetWords(estimate, target, forecast) {
  const t = percent(target);
  if (!estimate) return `target ${t}: no estimate yet`;
  if (forecast && forecast.reached) return `target ${t} reached: the whole interval is above it`;
  if (estimate.f1_low >= target) {
    const more = forecast ? forecast.more_answers : 0;
    return `target ${t}: the interval is above it, but rests on ${plural(estimate.labels, "answer")}; ${more || "a few"} more will confirm it`;
  }
  if (estimate.f1 >= target) return `target ${t} probably reached; more check answers will tell`;
  return `target ${t}: ${percent(target - estimate.f1)} to go`;
}

// The stopping forecast: "About 120 more labels to the target (80% interval: 60 to 300)".
export function forecastWords(forecast) {
  if (!forecast) return "";
  if (forecast.reached) return "The target is reached: you can stop here.";
  const round = (x) => Math.max(0, Math.round(x));
  const low = round(forecast.low);
  const high = forecast.high === null ? "more than the curve can tell" : round(forecast.high).toLocaleString("en");
  if (forecast.labels === null) return `The learning curve cannot tell yet how many more labels the target needs (at least ${low.toLocaleString("en")}).`;
  if (round(forecast.labels) === 0) {
    const answers = forecast.more_answers ? `${plural(forecast.more_answers, "more check answer")}` : "More check answers";
    const bound = forecast.high === null ? "" : ` (the curve allows up to ${high} more labels)`;
    return `The estimate is at the target. ${answers} will tell whether it holds${bound}.`;
  }
  const range = low === 0 ? `up to ${high}` : `${low.toLocaleString("en")} to ${high}`;
  return `About ${plural(round(forecast.labels), "more label")} to the target (80% interval: ${range}).`;
}

// Before the first model: what it waits for, from the training labels there are.
export function firstModelWords(counts, perClass) {
  const yes = counts.labelled_positive || 0;
  const no = counts.labelled_negative || 0;
  if (!perClass) return "no model yet";
  const more = Math.max(0, perClass - yes) + Math.max(0, perClass - no);
  if (!more) return "the first model is being trained";
  return `first model after about ${plural(more, "more label")} (it needs ${perClass} yes and ${perClass} no; ${yes} and ${no} so far)`;
}

// The F-score in plain words, from the estimate's recall and precision.
export function f1Words(estimate, task) {
  if (!estimate) return "The F-score says how good the model is, once there is one and some check answers.";
  const found = Math.round(estimate.recall * 100);
  const right = Math.round(estimate.precision * 100);
  return `The model finds about ${found} of 100 images that show ${withArticle(task)}; about ${right} of 100 of its yes answers are right. `
    + "The F-score combines the two (1 is perfect).";
}

export function withArticle(name) {
  return (/^[aeiou]/.test(name) ? "an " : "a ") + name;
}
