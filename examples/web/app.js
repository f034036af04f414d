// Fetches a scene-tagged contact link from Kefu's GET /links and shows it as a button and a QR code.
//
// Settings come from this page's own query string, so one copy serves every entry point:
//   api          Kefu's API base URL (the stack's ApiBaseUrl output, or http://127.0.0.1:3000 locally)
//   scene        where the customer starts, e.g. product_page (must be allowed by LinkScenes, if set)
//   scene_param  optional detail (at most 128 bytes), returned to Kefu in enter_session
//   account      optional alias or open_kfid (default: the deployment's default account)
// The page's origin must be listed in the LinkCorsOrigins template parameter.
"use strict";

const settings = new URLSearchParams(location.search);
const api = (settings.get("api") || document.documentElement.dataset.api || "").replace(/\/+$/, "");
const button = document.getElementById("contact");
const qr = document.getElementById("qr");
const status = document.getElementById("status");

async function showLink() {
  const query = new URLSearchParams({ scene: settings.get("scene") || "web_home" });
  for (const name of ["scene_param", "account"]) {
    if (settings.get(name)) query.set(name, settings.get(name));
  }
  const answer = await fetch(`${api}/links?${query}`);
  const body = await answer.json();
  if (!answer.ok) {
    throw new Error(body.message || `HTTP ${answer.status}`);
  }
  button.href = body.url; // inside WeChat this opens the chat; elsewhere, the QR code below does
  button.removeAttribute("aria-disabled");

  query.set("format", "svg");
  query.set("size", String(qr.width));
  qr.src = `${api}/links?${query}`; // an <img> needs no CORS; the browser or a CDN may cache it
  qr.hidden = false;
  await qr.decode();
  status.textContent = "";
  document.body.dataset.state = "ready";
}

showLink().catch((error) => {
  status.textContent = `The contact link could not be loaded: ${error.message}`;
  document.body.dataset.state = "error";
});
