"use strict";
// Optional raster tiles under the map's vector layers, from a "{z}/{x}/{y}" URL template
// (GET /api/v1/config → tiles; null means no tiles, the default, and the page draws only its
// metric grid). Tiles are Web Mercator; the map is equirectangular around the view's centre
// (x scaled by cos(latitude of the centre)). Each tile is drawn stretched between the screen
// positions of its own north-west and south-east corners, so tile corners land exactly where
// the map puts those coordinates and only the inside of a tile is off: Mercator's y is not
// linear in latitude, but across one tile at city zoom (z ≥ 12, < 10 km) the error is well
// under a pixel, and the x scale differs from the centre's cos(latitude) by < 0.1 % at city
// scale. Good enough to recognise streets under the terminals; not a surveying tool.
(function () {
  const EARTH_M = 40075016.686;   // equator length: metres per 256-px tile at zoom 0
  const MAX_TILES = 120, CACHE = 400;

  const lon2x = (lon, n) => ((lon + 180) / 360) * n;
  const lat2y = (lat, n) => {
    const r = (Math.max(-85.05, Math.min(85.05, lat)) * Math.PI) / 180;
    return ((1 - Math.log(Math.tan(r) + 1 / Math.cos(r)) / Math.PI) / 2) * n;
  };
  const x2lon = (x, n) => (x / n) * 360 - 180;
  const y2lat = (y, n) => (Math.atan(Math.sinh(Math.PI * (1 - (2 * y) / n))) * 180) / Math.PI;

  // template: "https://host/{z}/{x}/{y}.png" ({s} becomes a, b or c); onload: redraw request.
  function create(template, onload) {
    const cache = new Map();   // "z/x/y" -> {img, ok, failed}; Map keeps insertion order for LRU

    function tile(z, x, y) {
      const key = `${z}/${x}/${y}`;
      let e = cache.get(key);
      if (e) { cache.delete(key); cache.set(key, e); return e; }   // most recently used last
      e = { img: new Image(), ok: false, failed: false };
      e.img.decoding = "async";
      e.img.onload = () => { e.ok = true; onload(); };
      e.img.onerror = () => { e.failed = true; };                 // the grid stays visible there
      e.img.src = template.replace("{z}", z).replace("{x}", x).replace("{y}", y)
        .replace("{s}", "abc"[(x + y) % 3]);
      cache.set(key, e);
      while (cache.size > CACHE) {
        const [oldKey, old] = cache.entries().next().value;
        old.img.onload = old.img.onerror = null;
        cache.delete(oldKey);
      }
      return e;
    }

    // view: {lat, ppm} (pixels per metre); project(lat, lon) -> [x, y]; unproject(x, y) -> [lat, lon].
    function draw(ctx, view, w, h, project, unproject) {
      // The zoom whose tile pixels are nearest to screen pixels at the view's latitude.
      const ground = (EARTH_M * Math.cos((view.lat * Math.PI) / 180)) / 256;   // m per px at z0
      const z = Math.max(0, Math.min(19, Math.round(Math.log2(ground * view.ppm))));
      const n = 2 ** z;
      const [latTop, lonLeft] = unproject(0, 0), [latBot, lonRight] = unproject(w, h);
      const x0 = Math.floor(lon2x(lonLeft, n)), x1 = Math.floor(lon2x(lonRight, n));
      const y0 = Math.floor(lat2y(latTop, n)), y1 = Math.floor(lat2y(latBot, n));
      if ((x1 - x0 + 1) * (y1 - y0 + 1) > MAX_TILES) return;   // zoomed too far out for tiles
      for (let ty = Math.max(0, y0); ty <= Math.min(n - 1, y1); ty++) {
        for (let tx = x0; tx <= x1; tx++) {
          const wx = ((tx % n) + n) % n, e = tile(z, wx, ty);
          if (!e.ok) continue;
          const [ax, ay] = project(y2lat(ty, n), x2lon(tx, n));
          const [bx, by] = project(y2lat(ty + 1, n), x2lon(tx + 1, n));
          // Round outward so neighbouring tiles meet without hairline seams.
          const l = Math.floor(ax), tp = Math.floor(ay);
          ctx.drawImage(e.img, l, tp, Math.ceil(bx) - l, Math.ceil(by) - tp);
        }
      }
    }

    return { draw, size: () => cache.size };
  }

  window.YJTiles = { create };
})();
