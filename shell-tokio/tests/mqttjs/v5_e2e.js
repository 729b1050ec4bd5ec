// End to end with MQTT.js 5 (a third-party MQTT 5 client): SCRAM-SHA-256 enhanced authentication
// (good password, re-authentication, wrong password, unknown user and method) and outbound topic
// aliases, which MQTT.js checks
// strictly. Usage: node v5_e2e.js PORT   (the broker runs with a credentials file for alice/pencil)
'use strict';
const crypto = require('crypto');
const mqtt = require('mqtt');

const port = Number(process.argv[2]);
const url = `mqtt://127.0.0.1:${port}`;
const METHOD = 'SCRAM-SHA-256';

function fail(msg) {
  console.error('FAIL: ' + msg);
  process.exit(1);
}

// A SCRAM-SHA-256 client (RFC 5802): client-first, then client-final from server-first.
function scramClient(user, password) {
  const nonce = crypto.randomBytes(18).toString('base64');
  const bare = `n=${user},r=${nonce}`;
  const state = { first: Buffer.from('n,,' + bare) };
  state.final = (serverFirst) => {
    const text = serverFirst.toString();
    const attrs = Object.fromEntries(text.split(',').map((p) => [p[0], p.slice(2)]));
    if (!attrs.r.startsWith(nonce)) fail('server nonce does not extend ours');
    const salted = crypto.pbkdf2Sync(password, Buffer.from(attrs.s, 'base64'), Number(attrs.i), 32, 'sha256');
    const hmac = (key, msg) => crypto.createHmac('sha256', key).update(msg).digest();
    const clientKey = hmac(salted, 'Client Key');
    const storedKey = crypto.createHash('sha256').update(clientKey).digest();
    const withoutProof = `c=${Buffer.from('n,,').toString('base64')},r=${attrs.r}`;
    const authMessage = `${bare},${text},${withoutProof}`;
    const signature = hmac(storedKey, authMessage);
    const proof = Buffer.alloc(32);
    for (let i = 0; i < 32; i++) proof[i] = clientKey[i] ^ signature[i];
    state.serverSignature = hmac(hmac(salted, 'Server Key'), authMessage);
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`);
  };
  return state;
}

// Connects with SCRAM; resolves with { client, connack } or rejects with the error.
function scramConnect(user, password, clientId, method = METHOD) {
  return new Promise((resolve, reject) => {
    const scram = scramClient(user, password);
    const client = mqtt.connect(url, {
      protocolVersion: 5,
      clientId,
      reconnectPeriod: 0,
      connectTimeout: 5000,
      properties: { authenticationMethod: method, authenticationData: scram.first },
    });
    client.handleAuth = (packet, cb) => {
      const data = packet.properties && packet.properties.authenticationData;
      cb(null, {
        cmd: 'auth',
        reasonCode: 0x18,
        properties: { authenticationMethod: method, authenticationData: scram.final(data) },
      });
    };
    client.once('connect', (connack) => {
      const data = connack.properties && connack.properties.authenticationData;
      if (!data || data.toString() !== 'v=' + scram.serverSignature.toString('base64')) {
        reject(new Error('server signature missing or wrong: ' + (data && data.toString())));
      }
      resolve({ client, connack });
    });
    client.once('error', (err) => {
      client.end(true);
      reject(err);
    });
  });
}

async function scram() {
  const { client, connack } = await scramConnect('alice', 'pencil', 'js-alice');
  if (connack.properties.authenticationMethod !== METHOD) fail('CONNACK lacks the method');
  // The authenticated session works.
  await new Promise((resolve, reject) => {
    client.subscribe('scram/echo', { qos: 1 }, (err) => {
      if (err) return reject(err);
      client.publish('scram/echo', 'hello', { qos: 1 });
    });
    client.once('message', (topic, payload) => {
      if (payload.toString() !== 'hello') reject(new Error('bad echo'));
      resolve();
    });
  });
  // Re-authentication. MQTT.js has no public call for it: AUTH 0x19 goes out through its packet
  // writer, its AUTH handler answers the challenge, and it reports the final AUTH 0x00 as an 'error'
  // ("Connection refused: Success") while the connection stays up.
  const again = scramClient('alice', 'pencil');
  const reauthenticated = new Promise((resolve, reject) => {
    client.handleAuth = (packet, cb) => {
      const data = packet.properties && packet.properties.authenticationData;
      if (packet.reasonCode === 0x18) {
        cb(null, {
          cmd: 'auth',
          reasonCode: 0x18,
          properties: { authenticationMethod: METHOD, authenticationData: again.final(data) },
        });
      } else if (packet.reasonCode === 0 &&
                 data && data.toString() === 'v=' + again.serverSignature.toString('base64')) {
        resolve();
        cb(null);
      } else {
        reject(new Error(`unexpected AUTH ${packet.reasonCode}: ${data}`));
        cb(null);
      }
    };
  });
  client.on('error', (err) => {
    if (err.code !== 0) fail('error during re-authentication: ' + err.message);
  });
  client._writePacket({
    cmd: 'auth',
    reasonCode: 0x19,
    properties: { authenticationMethod: METHOD, authenticationData: again.first },
  });
  await reauthenticated;
  await client.publishAsync('scram/echo', 'after', { qos: 1 });
  if (!client.connected) fail('re-authentication dropped the connection');
  await client.endAsync();

  for (const [user, password, method, code] of [
    ['alice', 'wrong', METHOD, 0x87],
    ['nobody', 'pencil', METHOD, 0x87],
    ['alice', 'pencil', 'KERBEROS', 0x8c],
  ]) {
    try {
      await scramConnect(user, password, 'js-refused', method);
      fail(`${user}/${password}/${method} was let in`);
    } catch (err) {
      if (err.code !== code) fail(`${user}/${password}/${method}: expected reason ${code}, got ${err.code} (${err.message})`);
    }
  }
  console.log('scram ok');
}

async function aliases() {
  const received = [];
  const sub = mqtt.connect(url, {
    protocolVersion: 5, clientId: 'js-alias-sub', reconnectPeriod: 0,
    properties: { topicAliasMaximum: 2 },
  });
  await new Promise((resolve) => sub.once('connect', resolve));
  await sub.subscribeAsync('alias/#', { qos: 1 });
  const topics = ['alias/a', 'alias/b', 'alias/c', 'alias/a', 'alias/b', 'alias/c'];
  const done = new Promise((resolve) => {
    sub.on('message', (topic, payload, packet) => {
      received.push([topic, payload.toString(), packet.properties && packet.properties.topicAlias]);
      if (received.length === topics.length) resolve();
    });
  });
  sub.on('error', (err) => fail('subscriber error: ' + err.message));
  const pub = await mqtt.connectAsync(url, { protocolVersion: 5, clientId: 'js-alias-pub', reconnectPeriod: 0 });
  for (const [i, t] of topics.entries()) await pub.publishAsync(t, String(i), { qos: 1 });
  await done;
  const expected = [
    ['alias/a', '0', 1], ['alias/b', '1', 2], ['alias/c', '2', undefined],
    ['alias/a', '3', 1], ['alias/b', '4', 2], ['alias/c', '5', undefined],
  ];
  if (JSON.stringify(received) !== JSON.stringify(expected)) {
    fail('aliases: ' + JSON.stringify(received));
  }
  await pub.endAsync();
  await sub.endAsync();
  console.log('aliases ok');
}

(async () => {
  await scram();
  await aliases();
  console.log('mqttjs v5 e2e ok');
  process.exit(0);
})().catch((err) => fail(err.stack || String(err)));
