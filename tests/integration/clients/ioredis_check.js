// Connects with ioredis's default settings (only host and port given) and runs a few commands.
// Prints one JSON line; exits 1 if it cannot get through within the time limit.
const Redis = require("ioredis");

const port = Number(process.argv[2]);
const events = { reconnecting: 0, errors: [] };
const client = new Redis({ host: "127.0.0.1", port });
client.on("reconnecting", () => { events.reconnecting += 1; });
client.on("error", (error) => { events.errors.push(String(error)); });

const limit = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, reason: "timed out", events }));
  process.exit(1);
}, 15000);

(async () => {
  const results = {};
  results.ping = await client.ping();
  results.set = await client.set("ioredis:k", "v1");
  results.get = await client.get("ioredis:k");
  results.missing = await client.get("ioredis:missing");
  results.hset = await client.hset("ioredis:h", "a", "1", "b", "2");
  results.hgetall = await client.hgetall("ioredis:h");
  results.mset = await client.mset("ioredis:m1", "x", "ioredis:m2", "y", "ioredis:m3", "z");
  results.mget = await client.mget("ioredis:m3", "ioredis:nope", "ioredis:m1", "ioredis:m2");
  results.zadd = await client.zadd("ioredis:z", 1.5, "p", 2, "q");
  results.zrange = await client.zrange("ioredis:z", 0, -1, "WITHSCORES");
  results.del = await client.del("ioredis:k", "ioredis:m1", "ioredis:nope");
  results.pipeline = (await client.pipeline().incr("ioredis:n").incr("ioredis:n").get("ioredis:n").exec())
    .map(([error, value]) => (error ? String(error) : value));
  await client.quit();
  clearTimeout(limit);
  console.log(JSON.stringify({ ok: true, results, events }));
})().catch((error) => {
  console.log(JSON.stringify({ ok: false, reason: String(error), events }));
  process.exit(1);
});
