// A small Node.js HTTP API (no dependencies) with the trimtab sidecar in front of it.
//
// Run it, from the repository root, then the sidecar in a second shell:
//
//   PORT=8080 node examples/sidecar/server.js
//   TRIMTAB_TOKENS=alice:write:change-me trimtab-agent sidecar --instance api-1 --upstream http://127.0.0.1:8080 --port 8000 --openapi http://127.0.0.1:8080/openapi.json --state-dir /tmp/trimtab-sidecar
//
// Clients and the cockpit then talk to port 8000: `curl 127.0.0.1:8000/items/7`,
// `curl 127.0.0.1:8000/metrics`, and with the token
// `curl -H 'authorization: Bearer change-me' 127.0.0.1:8000/_trimtab/config`.
// Nothing here knows about trimtab: the sidecar names routes from openapi.json
// (/items/{id}), times them, caches /items/{id} once a TTL is set, and passes a
// W3C traceparent header on to this server, which echoes it in its log.

"use strict";

const fs = require("fs");
const http = require("http");
const path = require("path");

const OPENAPI = fs.readFileSync(path.join(__dirname, "openapi.json"));
let served = 0; // answers this process gave: a cached answer never reaches it

function json(res, status, body, headers = {}) {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

function readBody(req) {
  return new Promise((resolve) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
  });
}

async function handle(req, res) {
  const url = new URL(req.url, "http://localhost");
  served += 1;
  let match;
  if (req.method === "GET" && (match = /^\/items\/(\d+)$/.exec(url.pathname))) {
    // Cacheable: the sidecar may keep it for the TTL the operator sets.
    const id = Number(match[1]);
    setTimeout(() => json(res, 200, { id, name: `item ${id}`, served },
                          { "cache-control": "public, max-age=60" }), 10);
  } else if (req.method === "GET" && url.pathname === "/search") {
    json(res, 200, { q: url.searchParams.get("q") || "", hits: 3 });
  } else if (req.method === "POST" && url.pathname === "/orders") {
    const body = await readBody(req);
    let items = [];
    try {
      items = JSON.parse(body || "[]");
    } catch (err) {
      json(res, 400, { error: "body must be a JSON list of item ids" });
      return;
    }
    json(res, 201, { order: served, items });
  } else if (req.method === "GET" && url.pathname === "/health") {
    json(res, 200, { ok: true });
  } else if (req.method === "GET" && url.pathname === "/openapi.json") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(OPENAPI);
  } else {
    json(res, 404, { error: "not found" });
  }
  if (req.headers.traceparent) {
    console.log(`${req.method} ${url.pathname} traceparent=${req.headers.traceparent}`);
  }
}

const port = Number(process.env.PORT || 8080);
const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => json(res, 500, { error: String(err) }));
});
server.listen(port, "127.0.0.1", () => console.log(`listening on 127.0.0.1:${port}`));
process.on("SIGTERM", () => process.exit(0)); // nothing to flush: no state kept
