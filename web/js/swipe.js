// A sideways swipe on an element (a finger or a pen, not a mouse): right is a yes, left a
// no. Vertical moves stay the page's scrolling (the element has touch-action: pan-y).

// This far sideways, and mostly sideways.
const SWIPE_PX = 60;

// `answerWith("positive" | "negative")` is called once per swipe.
export function swipeable(li, answerWith) {
  let start = null;
  li.addEventListener("pointerdown", (event) => {
    if (event.pointerType !== "mouse") start = { x: event.clientX, y: event.clientY };
  });
  li.addEventListener("pointercancel", () => { start = null; });
  li.addEventListener("pointerup", (event) => {
    if (!start) return;
    const dx = event.clientX - start.x;
    const dy = event.clientY - start.y;
    start = null;
    if (Math.abs(dx) >= SWIPE_PX && Math.abs(dx) > 2 * Math.abs(dy)) answerWith(dx > 0 ? "positive" : "negative");
  });
}
