// The mask editor's canvas (a Streamlit components-v2 module, no build step, no network).
//
// It shows the photo scaled to fit its column (the whole photo is always reachable), and the
// mask as a translucent colour over it. Strokes are kept in IMAGE pixels ({tool, size, points}),
// so Python rasterises them at the photo's full resolution whatever the screen size or zoom.
// The tool is a name ("brush", "eraser", "rect"), never a colour.
//
// With a segmenter at hand the page also passes a selection: the canvas then offers its Select tool and
// draws the selected mask (a tinted picture Python makes) over the photo, with the clicks that made it:
//   left click / tap (Select tool)  -> trigger "click": {x, y, include}   (include unless "Exclude" is on)
//   right click                     -> trigger "click": {x, y, include: false}
//   drag of more than 6 px          -> trigger "box":   {left, top, right, bottom}
// all in PHOTO pixels, so the selection has the photo's full resolution whatever the zoom.
//
// data: {image: url, width, height, strokes, epoch, brush, maxBrush,
//        selection: null | {image: url | null, points: [[x, y, include]...], box: [l, t, r, b] | null}}
// trigger "strokes": {epoch, strokes} after every change (stroke, undo, redo, clear).

const TOOLS = [
  ["brush", "Brush", "B"],
  ["eraser", "Eraser", "E"],
  ["rect", "Rectangle", "R"],
  ["select", "Select", "S"],
  ["pan", "Pan", "H"],
];
const SELECT_ALPHA = 0.55;
const CLICK_COLOURS = { true: "rgb(30, 200, 90)", false: "rgb(230, 40, 40)" };
const DRAG_PX = 6; // a select press that moves further is a box, not a click
const MASK_RGB = "255, 40, 90";
const MASK_ALPHA = 0.5;
const MAX_ZOOM = 16;

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

function build(root) {
  const ui = {};
  ui.root = el("div", { class: "mask-editor", "data-testid": "mask-editor" });
  const bar = el("div", { class: "bar", role: "toolbar", "aria-label": "Mask tools" });
  ui.tools = {};
  for (const [tool, label, shortcut] of TOOLS) {
    const button = el("button", { type: "button", "data-tool": tool, title: `${label} (${shortcut})` }, label);
    ui.tools[tool] = button;
    bar.appendChild(button);
  }
  // With the Select tool on a touch screen (no right click): clicks can exclude instead.
  ui.exclude = el("button", { type: "button", class: "exclude", title: "Clicks mark what is NOT part of the object" }, "Exclude");
  bar.appendChild(ui.exclude);
  const size = el("label", { class: "size", title: "Brush size in photo pixels ( [ and ] )" });
  size.appendChild(el("span", {}, "Size"));
  ui.size = el("input", { type: "range", min: "1", max: "100", step: "1", "aria-label": "Brush size" });
  ui.sizeText = el("span", { class: "px" });
  size.append(ui.size, ui.sizeText);
  bar.appendChild(size);
  const actions = el("span", { class: "actions" });
  ui.undo = el("button", { type: "button", title: "Undo (Ctrl+Z)" }, "Undo");
  ui.redo = el("button", { type: "button", title: "Redo (Ctrl+Shift+Z)" }, "Redo");
  ui.clear = el("button", { type: "button", title: "Clear the whole mask" }, "Clear");
  ui.zoomOut = el("button", { type: "button", title: "Zoom out (-)", "aria-label": "Zoom out" }, "−");
  ui.fit = el("button", { type: "button", title: "Fit the whole photo (0)" }, "Fit");
  ui.zoomIn = el("button", { type: "button", title: "Zoom in (+, Ctrl+wheel, pinch)", "aria-label": "Zoom in" }, "+");
  actions.append(ui.undo, ui.redo, ui.clear, ui.zoomOut, ui.fit, ui.zoomIn);
  bar.appendChild(actions);
  ui.stage = el("div", { class: "stage" });
  ui.canvas = el("canvas", { class: "mask-canvas", "aria-label": "Photo: paint over what to change" });
  ui.stage.appendChild(ui.canvas);
  ui.hint = el("div", { class: "hint" });
  ui.root.append(bar, ui.stage, ui.hint);
  root.appendChild(ui.root);
  ui.style = el("style");
  ui.style.textContent = CSS;
  root.appendChild(ui.style);
  return ui;
}

const CSS = `
.mask-editor { font-family: var(--st-font, sans-serif); color: var(--st-text-color, #222); width: 100%; }
.bar { display: flex; flex-wrap: wrap; gap: 4px 6px; align-items: center; margin-bottom: 6px; }
.bar button { font: inherit; font-size: 0.85rem; padding: 3px 9px; min-height: 32px; border-radius: 6px;
  border: 1px solid var(--st-border-color, #ccc); background: var(--st-secondary-background-color, #f4f4f6);
  color: inherit; cursor: pointer; touch-action: manipulation; }
.bar button[aria-pressed="true"] { background: var(--st-primary-color, #ff4b4b); color: #fff;
  border-color: var(--st-primary-color, #ff4b4b); }
.bar button:disabled { opacity: 0.45; cursor: default; }
.bar button[hidden] { display: none; }
.bar button.exclude[aria-pressed="true"] { background: rgb(230, 40, 40); border-color: rgb(230, 40, 40); }
.size { display: inline-flex; align-items: center; gap: 4px; font-size: 0.85rem; }
.size input { width: 110px; }
.px { min-width: 52px; font-variant-numeric: tabular-nums; }
.actions { display: inline-flex; gap: 4px; flex-wrap: wrap; }
.stage { position: relative; overflow: hidden; margin: 0 auto; touch-action: none; user-select: none;
  background: repeating-conic-gradient(#ddd 0 25%, #f6f6f6 0 50%) 0 0 / 16px 16px; border-radius: 4px; }
.mask-canvas { display: block; width: 100%; height: 100%; cursor: crosshair; }
.stage.pan .mask-canvas { cursor: grab; }
.hint { font-size: 0.75rem; opacity: 0.7; margin-top: 3px; }
`;

class Editor {
  constructor(root, send) {
    this.ui = build(root);
    this.send = send;
    this.tool = "brush";
    this.strokes = [];
    this.past = []; // earlier stroke lists, for Undo
    this.future = []; // undone stroke lists, for Redo
    this.epoch = null;
    this.doc = null;
    this.view = { scale: 1, x: 0, y: 0 }; // screen = image * scale + (x, y)
    this.fitted = true;
    this.pointers = new Map();
    this.current = null;
    this.hover = null;
    this.spaceDown = false;
    this.image = new Image();
    this.image.onload = () => this.redrawMask() || this.draw();
    this.layer = document.createElement("canvas");
    this.selection = null; // {image, points, box} from Python, or null without a segmenter
    this.selectionImage = new Image();
    this.selectionImage.onload = () => this.draw();
    this.pending = []; // clicks sent and not yet answered with a new selection: drawn at once
    this.excluding = false;
    this.picking = null; // a Select press in progress: {x, y, sx, sy, button}
    this.ui.canvas.__editor = this; // for tests and debugging
    this.wire();
  }

  update(data) {
    this.send = data.send || this.send;
    if (data.image !== this.doc) {
      this.doc = data.image;
      this.width = data.width;
      this.height = data.height;
      this.image.src = data.image;
      const long = Math.max(data.width, data.height);
      const layerScale = Math.min(1, 2048 / long);
      this.layer.width = Math.max(1, Math.round(data.width * layerScale));
      this.layer.height = Math.max(1, Math.round(data.height * layerScale));
      this.layerScale = layerScale;
      this.ui.size.max = String(data.maxBrush);
      this.brush = data.brush;
      this.fitted = true;
      this.epoch = null;
    }
    if (data.epoch !== this.epoch) {
      // Python set the strokes (a fresh mount, a page switch back, a reload, a clear): adopt them.
      this.epoch = data.epoch;
      this.strokes = Array.isArray(data.strokes) ? data.strokes : [];
      this.past = [];
      this.future = [];
      this.redrawMask();
    }
    this.adoptSelection(data.selection || null);
    this.layout();
    this.refresh();
  }

  adoptSelection(selection) {
    const before = this.selection;
    this.selection = selection;
    if (!selection && this.tool === "select") this.tool = "brush";
    const url = selection && selection.image;
    if (!url) this.selectionImage.removeAttribute("src");
    else if (this.selectionImage.getAttribute("src") !== url) this.selectionImage.src = url;
    if (JSON.stringify(before) !== JSON.stringify(selection)) this.pending = [];
  }

  // --- geometry ---------------------------------------------------------------------------------
  fitScale() {
    const width = this.ui.root.clientWidth || 300;
    const maxHeight = Math.max(240, Math.round(window.innerHeight * 0.62));
    return Math.min(width / this.width, maxHeight / this.height);
  }

  layout() {
    if (!this.width) return;
    const fit = this.fitScale();
    const cssWidth = Math.max(1, Math.floor(this.width * fit));
    const cssHeight = Math.max(1, Math.floor(this.height * fit));
    this.ui.stage.style.width = `${cssWidth}px`;
    this.ui.stage.style.height = `${cssHeight}px`;
    const ratio = window.devicePixelRatio || 1;
    this.ui.canvas.width = Math.round(cssWidth * ratio);
    this.ui.canvas.height = Math.round(cssHeight * ratio);
    this.cssWidth = cssWidth;
    this.cssHeight = cssHeight;
    this.fit = fit;
    if (this.fitted) this.view = { scale: cssWidth / this.width, x: 0, y: 0 };
    this.clampView();
    this.draw();
  }

  clampView() {
    const v = this.view;
    const minScale = this.cssWidth / this.width;
    v.scale = Math.min(Math.max(v.scale, minScale), minScale * MAX_ZOOM);
    const w = this.width * v.scale;
    const h = this.height * v.scale;
    v.x = Math.min(0, Math.max(this.cssWidth - w, v.x));
    v.y = Math.min(0, Math.max(this.cssHeight - h, v.y));
    this.fitted = v.scale <= minScale * 1.0001;
  }

  zoomAt(factor, sx, sy) {
    const v = this.view;
    const ix = (sx - v.x) / v.scale;
    const iy = (sy - v.y) / v.scale;
    v.scale *= factor;
    this.fitted = false;
    this.clampView();
    v.x = sx - ix * v.scale;
    v.y = sy - iy * v.scale;
    this.clampView();
    this.draw();
    this.refresh();
  }

  toImage(event) {
    const rect = this.ui.canvas.getBoundingClientRect();
    const sx = ((event.clientX - rect.left) * this.cssWidth) / rect.width;
    const sy = ((event.clientY - rect.top) * this.cssHeight) / rect.height;
    return { sx, sy, x: (sx - this.view.x) / this.view.scale, y: (sy - this.view.y) / this.view.scale };
  }

  // --- drawing ----------------------------------------------------------------------------------
  paintStroke(ctx, stroke, scale) {
    ctx.save();
    ctx.globalCompositeOperation = stroke.tool === "eraser" ? "destination-out" : "source-over";
    ctx.fillStyle = ctx.strokeStyle = `rgb(${MASK_RGB})`;
    const points = stroke.points;
    if (stroke.tool === "rect") {
      const [[x0, y0], [x1, y1]] = points;
      ctx.fillRect(Math.min(x0, x1) * scale, Math.min(y0, y1) * scale, Math.abs(x1 - x0) * scale, Math.abs(y1 - y0) * scale);
    } else {
      ctx.lineWidth = stroke.size * scale;
      ctx.lineCap = "round";
      ctx.lineJoin = "round";
      ctx.beginPath();
      ctx.moveTo(points[0][0] * scale, points[0][1] * scale);
      if (points.length === 1) ctx.lineTo(points[0][0] * scale + 0.01, points[0][1] * scale);
      for (const [x, y] of points.slice(1)) ctx.lineTo(x * scale, y * scale);
      ctx.stroke();
    }
    ctx.restore();
  }

  redrawMask() {
    const ctx = this.layer.getContext("2d");
    ctx.clearRect(0, 0, this.layer.width, this.layer.height);
    for (const stroke of this.strokes) this.paintStroke(ctx, stroke, this.layerScale);
  }

  draw() {
    if (!this.width) return;
    const ctx = this.ui.canvas.getContext("2d");
    const ratio = this.ui.canvas.width / this.cssWidth;
    const v = this.view;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.ui.canvas.width, this.ui.canvas.height);
    ctx.setTransform(ratio * v.scale, 0, 0, ratio * v.scale, ratio * v.x, ratio * v.y);
    ctx.imageSmoothingQuality = "high";
    if (this.image.complete && this.image.naturalWidth) ctx.drawImage(this.image, 0, 0, this.width, this.height);
    ctx.globalAlpha = MASK_ALPHA;
    if (this.current) {
      // the stroke in progress joins the layer when it ends; until then it is drawn over a copy
      const scratch = this.scratch();
      scratch.getContext("2d").drawImage(this.layer, 0, 0);
      this.paintStroke(scratch.getContext("2d"), this.current, this.layerScale);
      ctx.drawImage(scratch, 0, 0, this.width, this.height);
    } else {
      ctx.drawImage(this.layer, 0, 0, this.width, this.height);
    }
    ctx.globalAlpha = 1;
    this.drawSelection(ctx, v);
    if (this.hover && (this.tool === "brush" || this.tool === "eraser")) {
      ctx.beginPath();
      ctx.arc(this.hover.x, this.hover.y, this.brush / 2, 0, 2 * Math.PI);
      ctx.lineWidth = 1.5 / v.scale;
      ctx.strokeStyle = "rgba(255,255,255,0.95)";
      ctx.stroke();
      ctx.lineWidth = 0.75 / v.scale;
      ctx.strokeStyle = "rgba(0,0,0,0.8)";
      ctx.stroke();
    }
  }

  drawSelection(ctx, v) {
    if (!this.selection) return;
    const picture = this.selectionImage;
    if (picture.getAttribute("src") && picture.complete && picture.naturalWidth) {
      ctx.globalAlpha = SELECT_ALPHA;
      ctx.drawImage(picture, 0, 0, this.width, this.height);
      ctx.globalAlpha = 1;
    }
    const box = this.picking && this.picking.box ? this.picking.box : this.selection.box;
    if (box) {
      const [l, t, r, b] = box;
      ctx.setLineDash(this.picking && this.picking.box ? [6 / v.scale, 4 / v.scale] : []);
      ctx.lineWidth = 2 / v.scale;
      ctx.strokeStyle = "rgb(45, 127, 249)";
      ctx.strokeRect(l, t, r - l, b - t);
      ctx.setLineDash([]);
    }
    const radius = 6 / v.scale; // the same size on screen at any zoom
    for (const [x, y, include] of [...(this.selection.points || []), ...this.pending]) {
      ctx.beginPath();
      ctx.arc(x, y, radius, 0, 2 * Math.PI);
      ctx.fillStyle = CLICK_COLOURS[Boolean(include)];
      ctx.fill();
      ctx.lineWidth = 2 / v.scale;
      ctx.strokeStyle = "#fff";
      ctx.stroke();
    }
  }

  scratch() {
    if (!this._scratch || this._scratch.width !== this.layer.width || this._scratch.height !== this.layer.height) {
      this._scratch = document.createElement("canvas");
      this._scratch.width = this.layer.width;
      this._scratch.height = this.layer.height;
    }
    this._scratch.getContext("2d").clearRect(0, 0, this._scratch.width, this._scratch.height);
    return this._scratch;
  }

  refresh() {
    for (const [tool, button] of Object.entries(this.ui.tools)) button.setAttribute("aria-pressed", String(tool === this.tool));
    this.ui.tools.select.hidden = !this.selection;
    this.ui.exclude.hidden = this.tool !== "select";
    this.ui.exclude.setAttribute("aria-pressed", String(this.excluding));
    this.ui.size.value = String(this.brush);
    this.ui.sizeText.textContent = `${Math.round(this.brush)} px`;
    this.ui.undo.disabled = this.past.length === 0;
    this.ui.redo.disabled = this.future.length === 0;
    this.ui.clear.disabled = this.strokes.length === 0;
    this.ui.fit.disabled = this.fitted;
    this.ui.zoomOut.disabled = this.fitted;
    this.ui.stage.classList.toggle("pan", this.tool === "pan" || this.spaceDown);
    const zoom = Math.round((this.view.scale / (this.cssWidth / this.width)) * 100);
    this.ui.hint.textContent =
      `${this.width}×${this.height} px · view ${zoom}% · ` +
      (this.tool === "select"
        ? "Select: click the object, right-click (or Exclude) what is not part of it, drag a box around it"
        : "Ctrl+Z undo, Ctrl+Shift+Z redo, [ ] brush size, Ctrl+wheel or pinch to zoom, Space+drag to pan");
  }

  // --- changes ----------------------------------------------------------------------------------
  commit() {
    this.send("strokes", { epoch: this.epoch, strokes: this.strokes });
    this.refresh();
  }

  change(strokes) {
    this.past.push(this.strokes);
    this.future = [];
    this.strokes = strokes;
    this.redrawMask();
    this.draw();
    this.commit();
  }

  add(stroke) {
    this.change([...this.strokes, stroke]);
  }

  clear() {
    if (this.strokes.length) this.change([]); // one undoable step
  }

  undo() {
    if (!this.past.length) return;
    this.future.push(this.strokes);
    this.strokes = this.past.pop();
    this.redrawMask();
    this.draw();
    this.commit();
  }

  redo() {
    if (!this.future.length) return;
    this.past.push(this.strokes);
    this.strokes = this.future.pop();
    this.redrawMask();
    this.draw();
    this.commit();
  }

  setBrush(size) {
    this.brush = Math.max(1, Math.min(Number(this.ui.size.max), Math.round(size)));
    this.refresh();
    this.draw();
  }

  // --- input ------------------------------------------------------------------------------------
  wire() {
    const ui = this.ui;
    for (const [tool, button] of Object.entries(ui.tools))
      button.addEventListener("click", () => {
        this.tool = tool;
        this.refresh();
      });
    ui.size.addEventListener("input", () => this.setBrush(Number(ui.size.value)));
    ui.exclude.addEventListener("click", () => {
      this.excluding = !this.excluding;
      this.refresh();
    });
    ui.undo.addEventListener("click", () => this.undo());
    ui.redo.addEventListener("click", () => this.redo());
    ui.clear.addEventListener("click", () => this.clear());
    ui.zoomIn.addEventListener("click", () => this.zoomAt(1.5, this.cssWidth / 2, this.cssHeight / 2));
    ui.zoomOut.addEventListener("click", () => this.zoomAt(1 / 1.5, this.cssWidth / 2, this.cssHeight / 2));
    ui.fit.addEventListener("click", () => {
      this.fitted = true;
      this.layout();
      this.refresh();
    });
    const canvas = ui.canvas;
    canvas.addEventListener("pointerdown", (event) => this.down(event));
    canvas.addEventListener("pointermove", (event) => this.move(event));
    canvas.addEventListener("pointerup", (event) => this.up(event));
    canvas.addEventListener("pointercancel", (event) => this.up(event, true));
    canvas.addEventListener("contextmenu", (event) => this.tool === "select" && event.preventDefault());
    canvas.addEventListener("pointerleave", () => {
      this.hover = null;
      this.draw();
    });
    canvas.addEventListener(
      "wheel",
      (event) => {
        if (!event.ctrlKey && !event.metaKey) return; // a plain wheel scrolls the page
        event.preventDefault();
        const point = this.toImage(event);
        this.zoomAt(Math.exp(-event.deltaY * 0.01), point.sx, point.sy);
      },
      { passive: false },
    );
    this.onKey = (event) => this.key(event);
    this.onKeyUp = (event) => {
      if (event.code === "Space") {
        this.spaceDown = false;
        this.refresh();
      }
    };
    document.addEventListener("keydown", this.onKey);
    document.addEventListener("keyup", this.onKeyUp);
    this.resize = new ResizeObserver(() => this.layout());
    this.resize.observe(ui.root);
    this.onWindowResize = () => this.layout();
    window.addEventListener("resize", this.onWindowResize);
  }

  dispose() {
    document.removeEventListener("keydown", this.onKey);
    document.removeEventListener("keyup", this.onKeyUp);
    window.removeEventListener("resize", this.onWindowResize);
    this.resize.disconnect();
  }

  key(event) {
    const target = event.composedPath ? event.composedPath()[0] : event.target;
    const tag = (target && target.tagName) || "";
    if (/^(INPUT|TEXTAREA|SELECT)$/.test(tag) && target.type !== "range") return;
    if (target && target.isContentEditable) return;
    if (!this.ui.root.isConnected) return;
    const mod = event.ctrlKey || event.metaKey;
    const key = event.key.toLowerCase();
    let handled = true;
    if (mod && key === "z" && event.shiftKey) this.redo();
    else if (mod && key === "z") this.undo();
    else if (mod && key === "y") this.redo();
    else if (mod) handled = false;
    else if (key === "[") this.setBrush(this.brush / 1.25);
    else if (key === "]") this.setBrush(Math.max(this.brush + 1, this.brush * 1.25));
    else if (event.code === "Space" && this.pointerOver) {
      this.spaceDown = true;
      this.refresh();
    } else if (this.pointerOver && (key === "+" || key === "=")) this.zoomAt(1.5, this.cssWidth / 2, this.cssHeight / 2);
    else if (this.pointerOver && key === "-") this.zoomAt(1 / 1.5, this.cssWidth / 2, this.cssHeight / 2);
    else if (this.pointerOver && key === "0") {
      this.fitted = true;
      this.layout();
      this.refresh();
    } else if (this.pointerOver && ["b", "e", "r", "h"].includes(key)) {
      this.tool = { b: "brush", e: "eraser", r: "rect", h: "pan" }[key];
      this.refresh();
    } else if (this.pointerOver && key === "s" && this.selection) {
      this.tool = "select";
      this.refresh();
    } else handled = false;
    if (handled) event.preventDefault();
  }

  down(event) {
    this.ui.canvas.setPointerCapture(event.pointerId);
    const point = this.toImage(event);
    this.pointers.set(event.pointerId, point);
    if (this.pointers.size === 2) {
      // a second finger: the stroke (or select press) in progress becomes a pinch (zoom and pan)
      this.current = null;
      this.picking = null;
      this.pinch = this.pinchState();
      this.draw();
      return;
    }
    if (this.pointers.size > 2) return;
    if (this.tool === "pan" || this.spaceDown || event.button === 1) {
      this.panning = { sx: point.sx, sy: point.sy, x: this.view.x, y: this.view.y };
      return;
    }
    if (this.tool === "select") {
      if (event.button === 0 || event.button === 2) this.picking = { ...point, button: event.button, box: null };
      return;
    }
    if (event.button !== 0) return;
    const p = [this.round(point.x), this.round(point.y)];
    if (this.tool === "rect") this.current = { tool: "rect", size: 0, points: [p, p] };
    else this.current = { tool: this.tool, size: Math.round(this.brush), points: [p] };
    this.draw();
  }

  photoBox(a, b) {
    const clip = (value, high) => this.round(Math.min(Math.max(value, 0), high));
    return [
      clip(Math.min(a.x, b.x), this.width),
      clip(Math.min(a.y, b.y), this.height),
      clip(Math.max(a.x, b.x), this.width),
      clip(Math.max(a.y, b.y), this.height),
    ];
  }

  pick(start, end) {
    // A Select press ended: a box when it moved, else a click (the right button always excludes).
    if (Math.hypot(end.sx - start.sx, end.sy - start.sy) >= DRAG_PX) {
      const [left, top, right, bottom] = this.photoBox(start, end);
      if (right - left >= 1 && bottom - top >= 1) this.send("box", { left, top, right, bottom });
      return;
    }
    if (start.x < 0 || start.y < 0 || start.x > this.width || start.y > this.height) return;
    const include = start.button !== 2 && !this.excluding;
    const click = [this.round(start.x), this.round(start.y), include];
    this.pending.push(click);
    this.send("click", { x: click[0], y: click[1], include });
  }

  round(value) {
    return Math.round(value * 10) / 10;
  }

  pinchState() {
    const [a, b] = [...this.pointers.values()];
    return {
      distance: Math.hypot(a.sx - b.sx, a.sy - b.sy) || 1,
      cx: (a.sx + b.sx) / 2,
      cy: (a.sy + b.sy) / 2,
      view: { ...this.view },
    };
  }

  move(event) {
    const point = this.toImage(event);
    this.pointerOver = true;
    this.hover = event.pointerType === "mouse" ? point : null;
    if (this.pointers.has(event.pointerId)) this.pointers.set(event.pointerId, point);
    if (this.pinch && this.pointers.size === 2) {
      const now = this.pinchState();
      const start = this.pinch;
      this.view = { ...start.view };
      this.fitted = false;
      const factor = now.distance / start.distance;
      const ix = (start.cx - start.view.x) / start.view.scale;
      const iy = (start.cy - start.view.y) / start.view.scale;
      this.view.scale = start.view.scale * factor;
      this.view.x = now.cx - ix * this.view.scale;
      this.view.y = now.cy - iy * this.view.scale;
      this.clampView();
      this.draw();
      this.refresh();
      return;
    }
    if (this.panning) {
      this.view.x = this.panning.x + point.sx - this.panning.sx;
      this.view.y = this.panning.y + point.sy - this.panning.sy;
      this.clampView();
      this.draw();
      return;
    }
    if (this.picking) {
      const start = this.picking;
      if (Math.hypot(point.sx - start.sx, point.sy - start.sy) >= DRAG_PX)
        start.box = this.photoBox(start, point);
      this.draw();
      return;
    }
    if (this.current) {
      const p = [this.round(point.x), this.round(point.y)];
      if (this.current.tool === "rect") this.current.points[1] = p;
      else {
        const last = this.current.points[this.current.points.length - 1];
        const spacing = Math.max(0.5, this.current.size / 16);
        if (Math.hypot(p[0] - last[0], p[1] - last[1]) < spacing) return;
        this.current.points.push(p);
      }
    }
    this.draw();
  }

  up(event, cancelled = false) {
    this.pointers.delete(event.pointerId);
    if (this.pinch) {
      if (this.pointers.size < 2) this.pinch = null;
      return;
    }
    if (this.panning) {
      this.panning = null;
      return;
    }
    if (this.picking) {
      const start = this.picking;
      this.picking = null;
      if (!cancelled) this.pick(start, this.toImage(event));
      return this.draw();
    }
    const stroke = this.current;
    this.current = null;
    if (!stroke || cancelled) return this.draw();
    if (stroke.tool === "rect") {
      const [[x0, y0], [x1, y1]] = stroke.points;
      if (Math.abs(x1 - x0) < 1 || Math.abs(y1 - y0) < 1) return this.draw();
      // clip the rectangle to the photo
      const clip = (value, high) => Math.min(Math.max(value, 0), high);
      stroke.points = [
        [clip(Math.min(x0, x1), this.width), clip(Math.min(y0, y1), this.height)],
        [clip(Math.max(x0, x1), this.width), clip(Math.max(y0, y1), this.height)],
      ];
    }
    this.add(stroke);
  }
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  const send = (name, value) => setTriggerValue(name, value);
  let editor = parentElement.__maskEditor;
  if (!editor) {
    editor = new Editor(parentElement, send);
    parentElement.__maskEditor = editor;
  }
  editor.send = send;
  if (data && data.image) editor.update(data);
  return () => {
    editor.dispose();
    delete parentElement.__maskEditor;
  };
}
