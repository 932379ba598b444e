// What the Rails app would produce, computed with node:crypto as Rails computes it:
// signed cookies (ActionDispatch's cookie jar), HS256 JWTs, Turbo's signed stream
// names (turbo-rails' MessageVerifier), and payloads as ActiveSupport::JSON encodes
// them. The byte-exact recipes are in the project's spec (rails-cookies.md §2, §5,
// §6; redis-adapter.md §3, §6; reference material kept outside this repository);
// auth.test.mjs checks these functions against the vectors computed there with real
// Rails, copied into the test, before any test relies on them.

import { createHmac, pbkdf2Sync } from "node:crypto";

/** The spec's made-up test `secret_key_base` (rails-cookies.md §9.1). */
export const SECRET_KEY_BASE =
  "569ceeda1d37437198001a03cb05ac9f31b1b368970ed76dff0d100f27b7fa984a037f6cf346f4b39655e414cfbeffa88fffbc2b09d4dcdefd63daed620b8998";

/**
 * `Rails.application.key_generator.generate_key(salt, length)`: PBKDF2 over the
 * secret, 1000 iterations; `digest` SHA1 before `load_defaults 7.0`, SHA256 after.
 */
export function deriveKey(secret, salt, length, digest = "sha256") {
  return pbkdf2Sync(secret, salt, 1000, length, digest);
}

/**
 * `ActiveSupport::JSON.encode(value)`: compact JSON with `<`, `>`, `&`, U+2028 and
 * U+2029 escaped (what the Rails Redis adapter publishes).
 */
export function activeSupportJson(value) {
  const escapes = { "<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029" };
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => escapes[c]);
}

const base64 = (text) => Buffer.from(text, "utf8").toString("base64");
const base64url = (text) => Buffer.from(text, "utf8").toString("base64url");

/**
 * `cookies.signed[name] = value` with Rails 6.0+ defaults (JSON serializer, the
 * `_rails` metadata envelope with purpose `cookie.<name>`, no expiry): `keyDigest` is
 * the PBKDF2 digest (`sha256` under `load_defaults 7.0`+), `hmacDigest` the
 * `signed_cookie_digest` (SHA1 unless the app changed it). Returns the raw value.
 */
export function signedCookie(name, value, { secret = SECRET_KEY_BASE, keyDigest = "sha256", hmacDigest = "sha1" } = {}) {
  const message = base64(activeSupportJson(value));
  const envelope = `{"_rails":{"message":${JSON.stringify(message)},"exp":null,"pur":${JSON.stringify(`cookie.${name}`)}}}`;
  const data = base64(envelope);
  const key = deriveKey(secret, "signed cookie", 64, keyDigest);
  return `${data}--${createHmac(hmacDigest, key).update(data).digest("hex")}`;
}

/** A `Cookie` request header for `{ name: rawValue }`, values escaped as Rack does. */
export function cookieHeader(cookies) {
  return Object.entries(cookies)
    .map(([name, value]) => `${name}=${encodeURIComponent(value)}`)
    .join("; ");
}

/** An HS256 JWT of `claims`. */
export function jwtHs256(claims, secret) {
  const header = base64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const payload = base64url(JSON.stringify(claims));
  const signature = createHmac("sha256", secret).update(`${header}.${payload}`).digest("base64url");
  return `${header}.${payload}.${signature}`;
}

/**
 * `Turbo::StreamsChannel.signed_stream_name(name)` for a string name (what
 * `turbo_stream_from` renders): MessageVerifier with SHA256 and the JSON serializer,
 * the key derived with the salt `turbo/signed_stream_verifier_key` (64 bytes).
 */
export function signedStreamName(name, { secret = SECRET_KEY_BASE, keyDigest = "sha256" } = {}) {
  const data = base64(activeSupportJson(name));
  const key = deriveKey(secret, "turbo/signed_stream_verifier_key", 64, keyDigest);
  return `${data}--${createHmac("sha256", key).update(data).digest("hex")}`;
}
