// Spin's host APIs from JavaScript (componentize-js via @spinframework/build-tools), called
// through the WIT in ../wit: the same routes and JSON as tests/apps/spin-apis-py.
import { Store } from "fermyon:spin/key-value@2.0.0";
import { get as getVariable } from "fermyon:spin/variables@2.0.0";
import { Connection } from "fermyon:spin/sqlite@2.0.0";

function json(status, value) {
  return new Response(JSON.stringify(value), { status, headers: { "content-type": "application/json" } });
}

function errorName(err) {
  const payload = err && err.payload !== undefined ? err.payload : err;
  return payload && payload.tag ? payload.tag : String(err);
}

function toValue([kind, value]) {
  if (kind === "int") return { tag: "integer", val: BigInt(value) };
  if (kind === "real") return { tag: "real", val: value };
  if (kind === "text") return { tag: "text", val: value };
  if (kind === "blob") return { tag: "blob", val: Uint8Array.from(value.match(/../g) || [], (h) => parseInt(h, 16)) };
  return { tag: "null" };
}

function fromValue(v) {
  if (v.tag === "integer") return ["int", Number(v.val)];
  if (v.tag === "blob") return ["blob", Array.from(v.val, (b) => b.toString(16).padStart(2, "0")).join("")];
  if (v.tag === "null") return ["null", null];
  return [v.tag === "real" ? "real" : "text", v.val];
}

async function handle(request) {
  const parts = new URL(request.url).pathname.split("/").filter((p) => p);
  try {
    if (parts.length === 1 && parts[0] === "plain") return new Response("plain");
    if (parts.length === 2 && parts[0] === "var") return new Response(getVariable(parts[1]));
    if (parts.length === 2 && parts[0] === "kv") return json(200, Store.open(parts[1]).getKeys().sort());
    if (parts.length === 3 && parts[0] === "kv") {
      const store = Store.open(parts[1]);
      if (request.method === "PUT") {
        store.set(parts[2], new Uint8Array(await request.arrayBuffer()));
        return new Response(null, { status: 204 });
      }
      const value = store.get(parts[2]);
      return value === undefined ? new Response(null, { status: 404 }) : new Response(value);
    }
    if (parts.length === 2 && parts[0] === "sql" && request.method === "POST") {
      const query = await request.json();
      const conn = Connection.open(parts[1]);
      const result = conn.execute(query.sql, (query.params || []).map(toValue));
      return json(200, { columns: result.columns, rows: result.rows.map((r) => r.values.map(fromValue)) });
    }
    return new Response("no such route", { status: 404 });
  } catch (err) {
    return json(500, { error: errorName(err) });
  }
}

addEventListener("fetch", (event) => event.respondWith(handle(event.request)));
