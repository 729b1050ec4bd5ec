// Headless check of the Cicada admin dashboard, driven by a Rust integration test:
//   node shell-tokio/tests/dashboard/dashboard.mjs
// Env: BASE_URL, TOKEN, KICK_CLIENT, RETAINED_TOPIC, RETAINED_PAYLOAD, [SCREENSHOT], [CHROMIUM]
// Prints "ok: <step>" per step; on failure "FAILED: <what>" plus console errors, exit 1.
import { chromium } from "playwright-core";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

const STEP_TIMEOUT = 15_000;
const TOTAL_TIMEOUT = 55_000;

function need(name) {
  const v = process.env[name];
  if (v === undefined || v === "") {
    console.log(`FAILED: environment variable ${name} is not set`);
    process.exit(1);
  }
  return v;
}

const BASE_URL = need("BASE_URL").replace(/\/+$/, "");
const TOKEN = need("TOKEN");
const KICK_CLIENT = need("KICK_CLIENT");
const RETAINED_TOPIC = need("RETAINED_TOPIC");
const RETAINED_PAYLOAD = need("RETAINED_PAYLOAD");
const SCREENSHOT = process.env.SCREENSHOT || "";

const consoleErrors = [];
let context = null;
let page = null;
let profileDir = null;

async function cleanup() {
  try { if (context) await context.close(); } catch (_) { /* ignore */ }
  try { if (profileDir) await rm(profileDir, { recursive: true, force: true }); } catch (_) { /* ignore */ }
}

async function fail(what, err) {
  console.log(`FAILED: ${what}${err ? ` (${String(err.message || err).split("\n")[0]})` : ""}`);
  if (page) {
    try {
      const shown = await page.evaluate(() => {
        const e = document.querySelector("#error");
        return e && !e.hidden ? e.textContent : "";
      });
      if (shown) console.log(`page #error: ${shown}`);
    } catch (_) { /* page may be gone */ }
    if (SCREENSHOT) {
      try { await page.screenshot({ path: SCREENSHOT, fullPage: true, timeout: 5000 }); } catch (_) { /* ignore */ }
    }
  }
  if (consoleErrors.length) {
    console.log(`page console errors (${consoleErrors.length}):`);
    for (const e of consoleErrors) console.log(`  ${e}`);
  } else {
    console.log("page console errors: none");
  }
  await cleanup();
  process.exit(1);
}

const watchdog = setTimeout(() => {
  fail(`whole run exceeded ${TOTAL_TIMEOUT / 1000} s`);
}, TOTAL_TIMEOUT);

async function step(name, fn) {
  try {
    await fn();
  } catch (e) {
    await fail(name, e);
  }
  if (consoleErrors.length) await fail(`console error logged during: ${name}`);
  console.log(`ok: ${name}`);
}

// Quote a string for use inside a CSS attribute selector: [attr="..."].
function cssString(s) {
  return '"' + s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\a ") + '"';
}

const wait = (fn, arg) => page.waitForFunction(fn, arg, { timeout: STEP_TIMEOUT, polling: 100 });

await step("launch chromium", async () => {
  profileDir = await mkdtemp(join(tmpdir(), "cicada-dashboard-"));
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1280, height: 900 },
    timeout: STEP_TIMEOUT,
  });
  context.setDefaultTimeout(STEP_TIMEOUT);
  page = context.pages()[0] || (await context.newPage());
  page.on("console", (m) => {
    if (m.type() === "error") {
      const loc = m.location();
      consoleErrors.push(`console.error: ${m.text()}${loc && loc.url ? ` at ${loc.url}:${loc.lineNumber}` : ""}`);
    }
  });
  page.on("pageerror", (e) => consoleErrors.push(`uncaught exception: ${e.message}`));
  page.on("dialog", (d) => d.accept().catch(() => {}));
});

await step(`load ${BASE_URL}/`, async () => {
  const resp = await page.goto(BASE_URL + "/", { waitUntil: "load", timeout: STEP_TIMEOUT });
  if (!resp || !resp.ok()) throw new Error(`HTTP ${resp ? resp.status() : "no response"}`);
  const title = await page.title();
  if (title !== "Cicada") throw new Error(`title is ${JSON.stringify(title)}`);
});

await step("save token", async () => {
  await page.fill("#token", TOKEN);
  await page.click("#save-token");
  const stored = await page.evaluate(() => sessionStorage.getItem("cicada-admin-token"));
  if (stored !== TOKEN) throw new Error("token not stored in sessionStorage");
});

await step("overview shows connections > 0", async () => {
  await wait(() => {
    const el = document.querySelector('#overview [data-metric="connections"]');
    return el && /^\d+$/.test(el.textContent.trim()) && Number(el.textContent) > 0;
  });
});

await step("a graph canvas is drawn", async () => {
  await wait(() => [...document.querySelectorAll("canvas.graph")].some((c) => {
    if (c.dataset.drawn !== "true" || !c.width || !c.height) return false;
    const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < px.length; i += 4) if (px[i] !== 0) return true;
    return false;
  }));
});

await step(`clients table shows ${KICK_CLIENT} connected`, async () => {
  await wait((id) => {
    const tr = [...document.querySelectorAll("#clients-table tr[data-client-id]")].find((r) => r.dataset.clientId === id);
    const st = tr && tr.querySelector(".state");
    return !!(st && st.textContent.trim() === "connected" && tr.querySelector("button.kick"));
  }, KICK_CLIENT);
});

await step(`kick ${KICK_CLIENT}`, async () => {
  await page.click(`#clients-table tr[data-client-id=${cssString(KICK_CLIENT)}] button.kick`);
  await wait((id) => {
    const tr = [...document.querySelectorAll("#clients-table tr[data-client-id]")].find((r) => r.dataset.clientId === id);
    if (!tr) return true;
    const st = tr.querySelector(".state");
    return !!(st && st.textContent.trim() === "disconnected");
  }, KICK_CLIENT);
});

await step(`retained browser shows ${RETAINED_TOPIC}`, async () => {
  await page.fill("#retained-filter", "#");
  await page.click("#retained-search");
  await wait(([topic, payload]) => {
    const tr = [...document.querySelectorAll("#retained-table tr[data-topic]")].find((r) => r.dataset.topic === topic);
    const p = tr && tr.querySelector(".payload");
    return !!(p && p.textContent.includes(payload.slice(0, 200)));
  }, [RETAINED_TOPIC, RETAINED_PAYLOAD]);
});

if (SCREENSHOT) {
  await step(`screenshot ${SCREENSHOT}`, async () => {
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  });
}

await step("no console errors", async () => {});
clearTimeout(watchdog);
await cleanup();
console.log("ok: dashboard check passed");
process.exit(0);
