#!/usr/bin/env ruby
# frozen_string_literal: true
#
# Generates src/rails/vectors/vectors.json with the REAL ActionDispatch cookie jar and
# ActiveSupport (Debian bookworm: ruby 3.1, actionpack/activesupport 6.1.7.10):
#
#   apt-get install -y ruby-rails
#   ruby src/rails/vectors/generate.rb > src/rails/vectors/vectors.json
#
# Every cookie is written through `request.cookie_jar.<kind>[name] = ...` and every
# expectation is what a fresh request's jar returns when it reads the cookie back from a
# `Cookie:` header (nil => the Rust side must refuse it). GCM/CBC IVs are random, so
# re-running changes the encrypted values but not the expectations.
#
# SHA256 PBKDF2 keys: ActiveSupport 6.1's KeyGenerator has no hash_digest_class (added
# in 7.0), so Sha256KeyGenerator below reproduces 7.0's generate_key with SHA256.
require "json"
require "base64"
require "openssl"
require "active_support"
require "active_support/core_ext"
require "active_support/key_generator"
require "active_support/message_verifier"
require "active_support/message_encryptor"
require "active_support/messages/rotation_configuration"
require "action_dispatch"
require "action_dispatch/middleware/cookies"
require "rack/mock"

SECRET = ("a" * 32) + ("b" * 32) + ("c" * 32) + ("d" * 32) # reference lab secret (public)
OLD_SECRET = "0123456789abcdef" * 8 # made-up previous secret for rotation vectors
C = ActionDispatch::Cookies

# ActiveSupport 7.0 KeyGenerator with hash_digest_class = OpenSSL::Digest::SHA256.
class Sha256KeyGenerator
  def initialize(secret, iterations:)
    @secret = secret
    @iterations = iterations
  end

  def generate_key(salt, key_size = 64)
    OpenSSL::PKCS5.pbkdf2_hmac(@secret, salt, @iterations, key_size, OpenSSL::Digest::SHA256.new)
  end
end

def key_generator(secret, digest)
  kg = if digest == "sha256"
    Sha256KeyGenerator.new(secret, iterations: 1000)
  else
    ActiveSupport::KeyGenerator.new(secret, iterations: 1000)
  end
  ActiveSupport::CachingKeyGenerator.new(kg)
end

DEFAULT_CFG = {
  "secrets" => [SECRET], "key_digest" => "sha1", "signed_digest" => "sha1",
  "cipher" => "gcm", "serializer" => "json", "metadata" => true
}.freeze

def env_config(cfg)
  cfg = DEFAULT_CFG.merge(cfg)
  secret, *old = cfg["secrets"]
  rotations = ActiveSupport::Messages::RotationConfiguration.new
  # Rails has one secret_key_base; older secrets are accepted through cookies_rotations
  # built from keys derived from them (the Rails upgrade-guide recipe).
  old.each do |s|
    kg = key_generator(s, cfg["key_digest"])
    rotations.rotate :signed, kg.generate_key("signed cookie"), digest: cfg["signed_digest"].upcase
    rotations.rotate :encrypted, kg.generate_key("authenticated encrypted cookie", 32), cipher: "aes-256-gcm"
  end
  {
    C::GENERATOR_KEY => key_generator(secret, cfg["key_digest"]),
    C::SIGNED_COOKIE_SALT => "signed cookie",
    C::ENCRYPTED_COOKIE_SALT => "encrypted cookie",
    C::ENCRYPTED_SIGNED_COOKIE_SALT => "signed encrypted cookie",
    C::AUTHENTICATED_ENCRYPTED_COOKIE_SALT => "authenticated encrypted cookie",
    C::USE_AUTHENTICATED_COOKIE_ENCRYPTION => cfg["cipher"] == "gcm",
    C::ENCRYPTED_COOKIE_CIPHER => "aes-256-gcm",
    C::SIGNED_COOKIE_DIGEST => cfg["signed_digest"].upcase,
    C::SECRET_KEY_BASE => secret,
    C::COOKIES_SERIALIZER => cfg["serializer"].to_sym,
    C::COOKIES_ROTATIONS => rotations,
    C::USE_COOKIES_WITH_METADATA => cfg["metadata"],
  }
end

def request(cfg, cookie_header = nil)
  env = Rack::MockRequest.env_for("http://example.test/cable")
  env["HTTP_COOKIE"] = cookie_header if cookie_header
  ActionDispatch::Request.new(env.merge(env_config(cfg)))
end

def write(cfg, kind, name, value)
  jar = request(cfg).cookie_jar
  jar.public_send(kind)[name] = value
  jar[name]
end

def plain(v)
  v.as_json
end

# What a fresh Rails request returns for cookies.<kind>[name] given this Cookie header.
def rails_read(cfg, kind, name, header)
  v = request(cfg, header).cookie_jar.public_send(kind)[name]
  { "expect" => plain(v) }
rescue StandardError => e
  { "expect" => nil, "rails_raised" => e.class.name }
end

CASES = []

# kind: :signed | :encrypted | :signed_or_encrypted (session); reads: list of overrides.
def add(id, kind, name, value, write_cfg: {}, reads: [{}], note: nil, extra: {})
  raw = write(write_cfg, kind, name, value)
  read_kind = kind == :signed_or_encrypted ? :encrypted : kind
  c = {
    "id" => id, "kind" => read_kind.to_s, "name" => name.to_s, "raw" => raw,
    "write_config" => DEFAULT_CFG.merge(write_cfg).except("secrets").merge("secret_index" => 0),
    "reads" => reads.map do |r|
      cfg = DEFAULT_CFG.merge(write_cfg).merge(r.except("name", "header", "at"))
      rname = r["name"] || name.to_s
      header = case r["header"]
               when "raw" then "#{rname}=#{raw}"
               when String then r["header"].gsub("VALUE", Rack::Utils.escape(raw))
               else "#{rname}=#{Rack::Utils.escape(raw)}"
               end
      {
        "name" => rname, "header" => header,
        "config" => cfg.except("metadata"),
      }.merge(rails_read(cfg, read_kind, rname, header))
    end
  }
  c["note"] = note if note
  CASES << c.merge(extra)
end

both = %w[sha1 sha256]

both.each do |kd|
  %w[sha1 sha256].each do |sd|
    add("signed_json_meta_#{kd}_keys_#{sd}_hmac", :signed, :user_id, 1,
        write_cfg: { "key_digest" => kd, "signed_digest" => sd },
        reads: [{}, { "name" => "other" , "header" => "other=VALUE"},
                { "key_digest" => (kd == "sha1" ? "sha256" : "sha1") }])
  end
  add("signed_json_nometa_#{kd}", :signed, :user_id, 42, write_cfg: { "key_digest" => kd, "metadata" => false },
      reads: [{}, { "metadata" => true }, { "header" => "other=VALUE", "name" => "other" }])
  add("signed_marshal_meta_#{kd}", :signed, :user_id, 42, write_cfg: { "key_digest" => kd, "serializer" => "marshal" },
      reads: [{}, { "serializer" => "hybrid" }, { "serializer" => "json" }])
  add("encrypted_gcm_json_meta_#{kd}", :encrypted, :user_id, 1, write_cfg: { "key_digest" => kd },
      reads: [{}, { "cipher" => "cbc" }, { "header" => "raw" }, { "name" => "other", "header" => "other=VALUE" }])
  add("encrypted_gcm_json_nometa_#{kd}", :encrypted, :user_id, "abc", write_cfg: { "key_digest" => kd, "metadata" => false })
  add("encrypted_cbc_json_meta_#{kd}", :encrypted, :user_id, 7, write_cfg: { "key_digest" => kd, "cipher" => "cbc" },
      reads: [{}, { "cipher" => "gcm" }])
  add("encrypted_cbc_marshal_nometa_#{kd}", :encrypted, :user_id, [1, "two", :three],
      write_cfg: { "key_digest" => kd, "cipher" => "cbc", "serializer" => "marshal", "metadata" => false },
      reads: [{}, { "serializer" => "hybrid" }])
  add("encrypted_gcm_marshal_meta_#{kd}", :encrypted, :user_id, { value: { "a" => [1, 2.5, nil, true], :b => "é" } },
      write_cfg: { "key_digest" => kd, "serializer" => "marshal" },
      reads: [{}, { "serializer" => "hybrid" }, { "serializer" => "json" }])
end

# Expiry: far future accepted, past refused (Rails writes the envelope `exp` for both).
add("signed_expires_future", :signed, :session_id, { value: 42, expires: Time.utc(2045, 1, 1) })
add("signed_expires_past", :signed, :session_id, { value: 42, expires: Time.utc(2001, 1, 1) })
add("encrypted_expires_future", :encrypted, :user_id, { value: 5, expires: Time.utc(2045, 1, 1) })
add("encrypted_expires_past", :encrypted, :user_id, { value: 5, expires: Time.utc(2001, 1, 1) })
raw = request({}).cookie_jar.tap { |j| j.signed.permanent[:user_id] = 3 }[:user_id]
CASES << {
  "id" => "signed_permanent", "kind" => "signed", "name" => "user_id", "raw" => raw,
  "write_config" => DEFAULT_CFG.except("secrets").merge("secret_index" => 0),
  "reads" => [{ "name" => "user_id", "header" => "user_id=#{Rack::Utils.escape(raw)}", "config" => DEFAULT_CFG.except("metadata") }
                .merge(rails_read({}, :signed, :user_id, "user_id=#{Rack::Utils.escape(raw)}"))]
}

# Devise remember-me cookie.
add("signed_devise_remember", :signed, :remember_user_token, [[1], "tok3n", "1700000000.123456"])

# Rotation: written with OLD_SECRET, read by an app whose current secret is SECRET.
%w[signed encrypted].each do |kind|
  add("rotation_#{kind}", kind.to_sym, :user_id, 9, write_cfg: { "secrets" => [OLD_SECRET] },
      reads: [{ "secrets" => [SECRET, OLD_SECRET] }, { "secrets" => [SECRET] }, { "secrets" => [OLD_SECRET] }],
      extra: { "write_secret" => OLD_SECRET })
end

# Cookie-store session with Devise/Warden data (cookies.signed_or_encrypted, as CookieStore does).
SESSION = {
  "session_id" => "3f1c0a6b9e2d4c8f7a5b1e0d9c8b7a6f",
  "warden.user.user.key" => [[42], "$2a$12$abcdefghijklmnopqrstuv"],
  "_csrf_token" => "q1w2e3r4t5y6u7i8o9p0",
  "user_id" => 42
}.freeze
both.each do |kd|
  %w[json marshal].each do |ser|
    add("session_warden_#{ser}_#{kd}", :signed_or_encrypted, :_myapp_session, { value: SESSION },
        write_cfg: { "key_digest" => kd, "serializer" => ser },
        reads: [{}, { "serializer" => "hybrid" }, { "name" => "_other_session", "header" => "_other_session=VALUE" }],
        extra: { "path" => ["warden.user.user.key"], "user_id" => 42 })
  end
end
add("session_nometa_cbc_marshal", :signed_or_encrypted, :_myapp_session, { value: SESSION },
    write_cfg: { "cipher" => "cbc", "serializer" => "marshal", "metadata" => false },
    reads: [{}, { "serializer" => "hybrid" }], extra: { "path" => ["user_id"], "user_id" => 42 })

# Cookie header handling: first occurrence wins, other cookies around it.
add("header_first_wins", :signed, :user_id, 11,
    reads: [{ "header" => "a=1; user_id=VALUE; user_id=garbage" },
            { "header" => "user_id=garbage; user_id=VALUE" },
            { "header" => "foo=bar;user_id=VALUE;  baz=%ZZ" }])

# Marshal blobs (Marshal.dump), with whether the safe subset must accept them.
S = "shared"
Point = Struct.new(:x, :y)
class Thing; end
class MyStr < String; end
module Ext; end
h_default = Hash.new(5).merge("a" => 1)
MARSHAL = [
  [nil, true], [true, true], [false, true], [0, true], [1, true], [-1, true], [122, true], [123, true],
  [-123, true], [-124, true], [255, true], [256, true], [-256, true], [-257, true], [65_535, true],
  [65_536, true], [2**24, true], [2**30 - 1, true], [-(2**30), true], [2**30, true], [2**31, true],
  [2**62, true], [-(2**62), true], [2**63 - 1, true], [-(2**63), true], [2**64, false],
  [1.5, true], [-0.0, true], [1.0e20, true], [1.0 / 3, true], [Float::NAN, false], [Float::INFINITY, false],
  ["abc", true], ["abc".b, true], ["é✓", true], ["\xff".b, false], ["é".encode("ISO-8859-1"), false],
  [:sym, true], [:"é", true], [[:a, :a, :b, :a], true], [[S, S, S], true], [[], true], [{}, true],
  [{ "a" => 1, :b => [1, 2, { "c" => nil }], 3 => "x" }, true],
  [[[[[[1]]]]], true], [SESSION, true], [{ "warden.user.user.key" => [[7], "salt"] }, true],
  [h_default, false], [Thing.new, false], [Point.new(1, 2), false], [Time.at(0).utc, false], [1..2, false],
  [/re/, false], [String, false], [Kernel, false], [MyStr.new("x"), false], ["x".dup.extend(Ext), false],
  [{ "k" => "v" }.compare_by_identity, false]
].freeze
blobs = MARSHAL.map.with_index do |(v, ok), i|
  { "id" => "marshal_#{i}", "ruby" => v.inspect, "hex" => Marshal.dump(v).unpack1("H*"),
    "supported" => ok, "expect" => ok ? plain(v) : nil }
end

out = {
  "generator" => "src/rails/vectors/generate.rb",
  "ruby" => RUBY_VERSION, "actionpack" => ActionPack.version.to_s, "activesupport" => ActiveSupport.version.to_s,
  "rack" => Rack.release, "generated_at" => Time.now.utc.iso8601,
  "secrets" => { "primary" => SECRET, "old" => OLD_SECRET },
  "cases" => CASES, "marshal" => blobs
}
puts JSON.pretty_generate(out)
