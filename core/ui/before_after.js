// Before/after wipe, entirely in the browser: drag (or use the arrow keys) and the divider moves with no
// server round trip. Both pictures fill the same box, so they line up pixel for pixel.
// data: {before: url, after: url, labels: [left, right], width, height}

const CSS = `
.wipe { position: relative; width: 100%; overflow: hidden; border-radius: 4px; touch-action: pan-y;
  user-select: none; cursor: ew-resize; background: #eee; }
.wipe img { position: absolute; inset: 0; width: 100%; height: 100%; display: block; pointer-events: none; }
.wipe .line { position: absolute; top: 0; bottom: 0; width: 2px; margin-left: -1px; background: #fff;
  box-shadow: 0 0 3px rgba(0,0,0,.6); pointer-events: none; }
.wipe .knob { position: absolute; top: 50%; width: 30px; height: 30px; margin: -15px 0 0 -15px; border-radius: 50%;
  background: #fff; box-shadow: 0 0 4px rgba(0,0,0,.5); display: flex; align-items: center; justify-content: center;
  font: 14px sans-serif; color: #333; }
.wipe .knob:focus-visible { outline: 3px solid var(--st-primary-color, #ff4b4b); }
.wipe .tag { position: absolute; top: 6px; padding: 1px 6px; border-radius: 3px; font: 12px sans-serif;
  color: #fff; background: rgba(0,0,0,.55); pointer-events: none; max-width: calc(50% - 18px);
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.wipe .tag.left { left: 6px; } .wipe .tag.right { right: 6px; }
`;

function build(root) {
  const box = document.createElement("div");
  box.className = "wipe";
  box.dataset.testid = "before-after";
  box.innerHTML =
    '<img class="after" alt=""><img class="before" alt=""><div class="line"></div>' +
    '<div class="knob" role="slider" tabindex="0" aria-valuemin="0" aria-valuemax="100">&#8596;</div>' +
    '<span class="tag left"></span><span class="tag right"></span>';
  const style = document.createElement("style");
  style.textContent = CSS;
  root.append(style, box);
  const view = {
    box,
    before: box.querySelector("img.before"),
    after: box.querySelector("img.after"),
    line: box.querySelector(".line"),
    knob: box.querySelector(".knob"),
    left: box.querySelector(".tag.left"),
    right: box.querySelector(".tag.right"),
    position: 50,
  };
  const place = (percent) => {
    view.position = Math.min(100, Math.max(0, percent));
    view.before.style.clipPath = `inset(0 ${100 - view.position}% 0 0)`;
    view.line.style.left = view.knob.style.left = `${view.position}%`;
    view.knob.setAttribute("aria-valuenow", String(Math.round(view.position)));
  };
  const fromEvent = (event) => {
    const rect = box.getBoundingClientRect();
    place(((event.clientX - rect.left) / rect.width) * 100);
  };
  let dragging = false;
  box.addEventListener("pointerdown", (event) => {
    dragging = true;
    box.setPointerCapture(event.pointerId);
    fromEvent(event);
  });
  box.addEventListener("pointermove", (event) => dragging && fromEvent(event));
  box.addEventListener("pointerup", () => (dragging = false));
  box.addEventListener("pointercancel", () => (dragging = false));
  view.knob.addEventListener("keydown", (event) => {
    const step = event.shiftKey ? 10 : 2;
    if (event.key === "ArrowLeft") place(view.position - step);
    else if (event.key === "ArrowRight") place(view.position + step);
    else return;
    event.preventDefault();
  });
  view.place = place;
  place(50);
  return view;
}

export default function (component) {
  const { data, parentElement } = component;
  let view = parentElement.__wipe;
  if (!view) view = parentElement.__wipe = build(parentElement);
  if (!data) return;
  if (view.before.getAttribute("src") !== data.before) view.before.src = data.before;
  view.box.style.aspectRatio = `${data.width} / ${data.height}`;
  if (view.after.getAttribute("src") !== data.after) {
    const first = !view.after.getAttribute("src");
    view.after.src = data.after;
    // a new result: bring it into view (on a phone it lands below the Run button), once laid out
    if (!first || data.reveal)
      setTimeout(() => view.box.scrollIntoView({ block: "nearest", behavior: "smooth" }), 150);
  }
  view.left.textContent = data.labels[0];
  view.right.textContent = data.labels[1];
  view.knob.setAttribute("aria-label", `Divider between ${data.labels[0]} and ${data.labels[1]}`);
}
