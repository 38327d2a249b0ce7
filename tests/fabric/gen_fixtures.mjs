// Regenerates FABRIC_FIXTURES in tests/test_masks.py from the Fabric.js that streamlit-drawable-canvas bundles.
// How: copy the package's frontend/build/index-*.js to tests/fabric/bundle.mjs (not committed), append
//   export { Wt as Path, rt as Rect, it as Circle, kt as Line, Vt as Polygon, Yt as Polyline, vr as Triangle,
//            ue as Ellipse, _h as PencilBrush, v as Point, Mn as pointsToPath };
// (the minified names differ per release: find the classes by their `type` strings), then run
//   node tests/fabric/gen_fixtures.mjs > fixtures.json   and paste the JSON into FABRIC_FIXTURES.
// Fixture generator: real Fabric 7.4 (bundled with streamlit-drawable-canvas 0.13) builds objects as the canvas
// tools do; probes come from Fabric's own calcTransformMatrix + plain distance geometry.
globalThis.window = undefined;
const m = await import('./bundle.mjs');
let seed = 7; const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
const r1 = (v) => Math.round(v * 10) / 10;
const apply = (M, p) => ({ x: M[0] * p.x + M[2] * p.y + M[4], y: M[1] * p.x + M[3] * p.y + M[5] });
const sv = (M) => { const a = M[0], b = M[1], c = M[2], d = M[3]; const s1 = Math.hypot(a + d, c - b) / 2, s2 = Math.hypot(a - d, c + b) / 2; return [s1 + s2, Math.abs(s1 - s2)]; };
function distSeg(p, a, b) { const dx = b.x - a.x, dy = b.y - a.y, L = dx * dx + dy * dy; let t = L ? ((p.x - a.x) * dx + (p.y - a.y) * dy) / L : 0; t = Math.max(0, Math.min(1, t)); return Math.hypot(p.x - a.x - t * dx, p.y - a.y - t * dy); }
function distPoly(p, pts, closed) { let d = Infinity; const n = pts.length; for (let i = 0; i < n - 1 + (closed ? 1 : 0); i++) d = Math.min(d, distSeg(p, pts[i], pts[(i + 1) % n])); return d; }
function inside(p, pts) { let w = false; for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) { const a = pts[i], b = pts[j]; if ((a.y > p.y) !== (b.y > p.y) && p.x < (b.x - a.x) * (p.y - a.y) / (b.y - a.y) + a.x) w = !w; } return w; }
function centreline(path, off) { // sample a simplified path (M/Q/L) densely, local coords
  const out = []; let cur = null;
  for (const c of path) {
    if (c[0] === 'M') { cur = { x: c[1], y: c[2] }; out.push(cur); }
    else if (c[0] === 'L') { cur = { x: c[1], y: c[2] }; out.push(cur); }
    else if (c[0] === 'Q') { for (let k = 1; k <= 16; k++) { const t = k / 16, u = 1 - t; out.push({ x: u * u * cur.x + 2 * u * t * c[1] + t * t * c[3], y: u * u * cur.y + 2 * u * t * c[2] + t * t * c[4] }); } cur = { x: c[3], y: c[4] }; }
  }
  return out.map((p) => ({ x: p.x - off.x, y: p.y - off.y }));
}
// probes: region given by (pointFn -> signed "depth": >0 inside by that many canvas px, <0 outside)
function probes(depth, box, n = 40) {
  const ins = [], outs = [];
  for (let k = 0; k < 200000 && (ins.length < n || outs.length < n); k++) {
    const p = { x: box[0] + rand() * (box[2] - box[0]), y: box[1] + rand() * (box[3] - box[1]) };
    const d = depth(p);
    if (d > 1.5 && d < 5 && ins.length < n) ins.push([r1(p.x), r1(p.y)]);
    if (d < -1.5 && d > -5 && outs.length < n) outs.push([r1(p.x), r1(p.y)]);
  }
  return { inside: ins, outside: outs };
}
const fixtures = [];
function strokeFixture(name, obj, edits) {
  obj.set(edits); obj.setCoords();
  const M = obj.calcTransformMatrix(); const [smax, smin] = sv(M);
  const line = centreline(obj.path, obj.pathOffset).map((p) => apply(M, p));
  const hw = obj.strokeWidth / 2;
  const xs = line.map((p) => p.x), ys = line.map((p) => p.y), R = hw * smax + 10;
  const box = [Math.min(...xs) - R, Math.min(...ys) - R, Math.max(...xs) + R, Math.max(...ys) + R];
  const depth = (p) => { const d = distPoly(p, line, false); return d < hw * smin ? hw * smin - d : d > hw * smax ? hw * smax - d : 0; };
  fixtures.push({ name, objects: [obj.toObject()], ...probes(depth, box) });
}
// freedraw: PencilBrush.createPath on Mn(points, width / 1000)
const pts = []; for (let i = 0; i <= 24; i++) pts.push(new m.Point(60 + i * 6, 80 + 25 * Math.sin(i / 4)));
const brush = (w) => new m.Path(m.pointsToPath(pts, w / 1000), { fill: null, stroke: '#ff0000', strokeWidth: w, strokeLineCap: 'round', strokeLineJoin: 'round', strokeMiterLimit: 10, strokeDashArray: null });
strokeFixture('freedraw', brush(12), {});
const moved = brush(12); strokeFixture('freedraw_moved', moved, { left: moved.left + 90, top: moved.top + 55 });
strokeFixture('freedraw_scaled_rotated', brush(12), { scaleX: 1.6, scaleY: 0.7, angle: 30 });
// rect tool: origin left/top, strokeUniform; then moved, scaled and rotated by the edit tool
function rectFixture(name, edits) {
  const r = new m.Rect({ left: 200, top: 150, originX: 'left', originY: 'top', width: 80, height: 50, stroke: '#00f', strokeWidth: 6, fill: '#eee', strokeUniform: true, angle: 0 });
  r.set(edits); r.setCoords();
  const c = r.getCoords(); // corners of the stroked box in canvas coordinates
  const xs = c.map((p) => p.x), ys = c.map((p) => p.y);
  const box = [Math.min(...xs) - 15, Math.min(...ys) - 15, Math.max(...xs) + 15, Math.max(...ys) + 15];
  fixtures.push({ name, objects: [r.toObject()], ...probes((p) => (inside(p, c) ? 1 : -1) * distPoly(p, c, true), box) });
}
rectFixture('rect', {});
rectFixture('rect_scaled_rotated', { scaleX: 1.5, scaleY: 2, angle: 25, left: 260, top: 120 });
// circle tool: origin left/center, radius, angle from the drag
const circle = new m.Circle({ left: 120, top: 260, originX: 'left', originY: 'center', strokeWidth: 8, stroke: 'rgba(255,0,0,0.5)', fill: '#eee', radius: 30 });
circle.set({ angle: 40 }); circle.setCoords();
{ const c = circle.getCenterPoint(), R = 30 + 4; fixtures.push({ name: 'circle', objects: [circle.toObject()], ...probes((p) => R - Math.hypot(p.x - c.x, p.y - c.y), [c.x - R - 15, c.y - R - 15, c.x + R + 15, c.y + R + 15]) }); }
// polygon tool, then moved
const poly = new m.Polygon([{ x: 400, y: 250 }, { x: 470, y: 270 }, { x: 450, y: 330 }, { x: 420, y: 300 }, { x: 390, y: 320 }], { strokeWidth: 4, fill: '#eee', stroke: '#0f0' });
poly.set({ left: poly.left - 30, top: poly.top + 20 }); poly.setCoords();
{ const M = poly.calcTransformMatrix(); const c = poly.points.map((p) => apply(M, { x: p.x - poly.pathOffset.x, y: p.y - poly.pathOffset.y }));
  const xs = c.map((p) => p.x), ys = c.map((p) => p.y);
  fixtures.push({ name: 'polygon_moved', objects: [poly.toObject()], ...probes((p) => inside(p, c) ? 2 + distPoly(p, c, true) : 2 - distPoly(p, c, true), [Math.min(...xs) - 15, Math.min(...ys) - 15, Math.max(...xs) + 15, Math.max(...ys) + 15]) }); }
// line tool: origin center, butt caps
const line = new m.Line([320, 60, 420, 110], { strokeWidth: 10, fill: '#000', stroke: '#000', originX: 'center', originY: 'center' });
{ const M = line.calcTransformMatrix(), lp = line.calcLinePoints(); const a = apply(M, { x: lp.x1, y: lp.y1 }), b = apply(M, { x: lp.x2, y: lp.y2 });
  const L = Math.hypot(b.x - a.x, b.y - a.y), ux = (b.x - a.x) / L, uy = (b.y - a.y) / L;
  const depth = (p) => { const t = (p.x - a.x) * ux + (p.y - a.y) * uy, n = Math.abs(-(p.x - a.x) * uy + (p.y - a.y) * ux); return Math.min(t, L - t, 5 - n); };
  fixtures.push({ name: 'line', objects: [line.toObject()], ...probes(depth, [300, 40, 440, 130]) }); }

// a straight brush stroke, for the crisp-edge check, and a paint stroke crossed by an eraser stroke
const straight = []; for (let x = 100; x <= 200; x += 5) straight.push(new m.Point(x, 100));
const straightPath = new m.Path(m.pointsToPath(straight, 20 / 1000), { fill: null, stroke: '#ff0000', strokeWidth: 20, strokeLineCap: 'round', strokeLineJoin: 'round', strokeMiterLimit: 10 });
fixtures.push({ name: 'straight', objects: [straightPath.toObject()], inside: [], outside: [] });
const vertical = []; for (let y = 40; y <= 140; y += 5) vertical.push(new m.Point(130 + (y % 10 ? 1 : 0), y));
const eraser = new m.Path(m.pointsToPath(vertical, 16 / 1000), { fill: null, stroke: '#ffffff', strokeWidth: 16, strokeLineCap: 'round', strokeLineJoin: 'round', strokeMiterLimit: 10 });
const paint = brush(12);
{ const pm = paint.calcTransformMatrix(), em = eraser.calcTransformMatrix();
  const pl = centreline(paint.path, paint.pathOffset).map((p) => apply(pm, p)), el = centreline(eraser.path, eraser.pathOffset).map((p) => apply(em, p));
  const depth = (p) => { const dp = 6 - distPoly(p, pl, false), de = 8 - distPoly(p, el, false); return de > 0 ? -de : dp; };
  fixtures.push({ name: 'paint_then_eraser', objects: [paint.toObject(), eraser.toObject()], ...probes(depth, [50, 30, 220, 150]) }); }
console.log(JSON.stringify(fixtures));
