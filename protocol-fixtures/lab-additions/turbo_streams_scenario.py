# Added to the lab's recorder/record.py (before the remote_disconnect scenario) to
# record turbo_streams.jsonl; the lab app also got app/channels/turbo/streams_channel.rb
# (turbo_streams_channel.rb here). See ../README.md.

def turbo_signed(name):
    """Rails' own signed stream name for `name` (Turbo::StreamsChannel.verifier.generate)."""
    import subprocess
    code = f"Turbo::StreamsChannel.verifier.generate({json.dumps(name)})"
    out = subprocess.check_output(["ruby", "bin/runner.rb", code], cwd=LAB,
                                  env=dict(os.environ, LOG_LEVEL="warn", RUNNER_PRINT="1"))
    return json.loads(out.decode().strip().splitlines()[-1])


@scenario("Turbo::StreamsChannel: a Rails-signed stream name, a tampered one, garbage, none; unsubscribe")
async def turbo_streams(sc):
    token = turbo_signed("Z2lkOi8vcmVmYXBwL1VzZXIvMQ")
    data, digest = token.rsplit("--", 1)
    tampered = data + "--" + ("0" if digest[0] != "0" else "1") + digest[1:]
    good = ident("Turbo::StreamsChannel", signed_stream_name=token)
    a = sc.conn("alice")
    await a.open(cookie=signed_cookie(1))
    await a.welcome()
    await a.subscribe(good)
    await a.confirm(good)
    for label, idn in [
        ("tampered digest", ident("Turbo::StreamsChannel", signed_stream_name=tampered)),
        ("garbage", ident("Turbo::StreamsChannel", signed_stream_name="garbage")),
        ("missing", ident("Turbo::StreamsChannel")),
    ]:
        await a.subscribe(idn)
        got = await a.quiet(0.8)
        sc.tr.note(f"{label}: client got {got}")
    await a.unsubscribe(good)
    sc.tr.note(f"after unsubscribe: client got {await a.quiet(0.8)}")
    await a.close()
