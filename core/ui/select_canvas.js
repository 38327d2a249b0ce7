// Click to select (a Streamlit components-v2 module, no build step, no network).
//
// Shows the photo with the current selection already drawn over it (Python renders that picture),
// and reports where the user clicks, in the PHOTO's pixels (the picture may be shown at any size):
//   left click / tap          -> trigger "click": {x, y, include: data.include}
//   right click               -> trigger "click": {x, y, include: false}
//   drag (more than 6 px)     -> trigger "box":   {left, top, right, bottom}
//
// data: {image: url, width, height, include}

const CSS = `
.select-stage { position: relative; width: 100%; line-height: 0; touch-action: none; user-select: none; }
.select-stage img { width: 100%; height: auto; display: block; cursor: crosshair; border-radius: 4px; }
.select-drag { position: absolute; border: 2px dashed #2d7ff9; background: rgba(45, 127, 249, 0.12);
  pointer-events: none; display: none; }
`;

function photoPoint(img, data, event) {
  const rect = img.getBoundingClientRect();
  const x = ((event.clientX - rect.left) / rect.width) * data.width;
  const y = ((event.clientY - rect.top) / rect.height) * data.height;
  const clip = (value, high) => Math.max(0, Math.min(high, value));
  return { x: clip(x, data.width), y: clip(y, data.height), cssX: event.clientX - rect.left, cssY: event.clientY - rect.top };
}

class Selector {
  constructor(root, send) {
    this.send = send;
    this.data = null;
    this.stage = document.createElement("div");
    this.stage.className = "select-stage";
    this.stage.setAttribute("data-testid", "click-select");
    this.img = document.createElement("img");
    this.img.alt = "Photo: click on what to select";
    this.img.draggable = false;
    this.box = document.createElement("div");
    this.box.className = "select-drag";
    this.stage.append(this.img, this.box);
    this.style = document.createElement("style");
    this.style.textContent = CSS;
    root.append(this.style, this.stage);
    this.start = null;
    this.img.addEventListener("contextmenu", (event) => event.preventDefault());
    this.img.addEventListener("pointerdown", (event) => this.down(event));
    this.img.addEventListener("pointermove", (event) => this.move(event));
    this.img.addEventListener("pointerup", (event) => this.up(event));
  }

  update(data) {
    this.data = data;
    if (this.img.getAttribute("src") !== data.image) this.img.setAttribute("src", data.image);
  }

  down(event) {
    if (!this.data) return;
    event.preventDefault();
    this.img.setPointerCapture(event.pointerId);
    this.start = { ...photoPoint(this.img, this.data, event), button: event.button };
  }

  move(event) {
    if (!this.start) return;
    const here = photoPoint(this.img, this.data, event);
    if (Math.hypot(here.cssX - this.start.cssX, here.cssY - this.start.cssY) < 6) return;
    Object.assign(this.box.style, {
      display: "block",
      left: `${Math.min(here.cssX, this.start.cssX)}px`,
      top: `${Math.min(here.cssY, this.start.cssY)}px`,
      width: `${Math.abs(here.cssX - this.start.cssX)}px`,
      height: `${Math.abs(here.cssY - this.start.cssY)}px`,
    });
  }

  up(event) {
    if (!this.start) return;
    const start = this.start;
    this.start = null;
    this.box.style.display = "none";
    const end = photoPoint(this.img, this.data, event);
    const round = (value) => Math.round(value * 10) / 10;
    if (Math.hypot(end.cssX - start.cssX, end.cssY - start.cssY) >= 6) {
      this.send("box", {
        left: round(Math.min(start.x, end.x)),
        top: round(Math.min(start.y, end.y)),
        right: round(Math.max(start.x, end.x)),
        bottom: round(Math.max(start.y, end.y)),
      });
      return;
    }
    const include = start.button === 2 ? false : Boolean(this.data.include);
    this.send("click", { x: round(start.x), y: round(start.y), include });
  }
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let selector = parentElement.__clickSelect;
  if (!selector) {
    selector = new Selector(parentElement, setTriggerValue);
    parentElement.__clickSelect = selector;
  }
  selector.send = setTriggerValue;
  if (data && data.image) selector.update(data);
  return () => {
    selector.stage.remove();
    selector.style.remove();
    delete parentElement.__clickSelect;
  };
}
