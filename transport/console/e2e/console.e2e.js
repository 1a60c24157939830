// Browser test of the Parley console, driven by cmd/parley's
// TestConsoleInBrowser: node console.e2e.js <base URL> <artifacts dir>.
// Two pages as two accounts chat both ways and in a group; one page goes
// offline while the other sends, comes back and shows every missed message
// exactly once in msgid order; the event view shows the exchange.
// Screenshots of both views go to the artifacts dir.
const { chromium } = require("playwright-core");
const path = require("path");

const [base, artifacts] = process.argv.slice(2);
const timeout = 20000;

function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
}

async function signIn(browser, account, errors) {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(timeout);
  page.on("console", (m) => { if (m.type() === "error") errors.push(`${account}: ${m.text()}`); });
  page.on("pageerror", (e) => errors.push(`${account}: ${e.message}`));
  page.on("request", (r) => { if (!r.url().startsWith(base) && !r.url().startsWith("ws://") && !r.url().startsWith("data:")) errors.push(`${account}: external request ${r.url()}`); });
  await page.goto(base + "/console/");
  await page.fill("#account", account);
  await page.click("#signin-button");
  await page.waitForFunction(() => document.getElementById("conn-status").textContent.startsWith("Connected"));
  check(await page.isHidden("#signin"), "sign-in form hidden after sign-in");
  return page;
}

async function send(page, text) {
  await page.fill("#body", text);
  await page.press("#body", "Enter");
  await page.waitForSelector(`#messages li:has-text("${text}") .state:text("acked")`);
}

async function bodies(page) {
  return page.$$eval("#messages li .body", (els) => els.map((e) => e.textContent));
}

async function msgids(page) {
  return page.$$eval("#messages li", (els) => els.map((e) => Number(e.dataset.msgid)));
}

async function openConversation(page, titleText) {
  await page.click(`#conversations li:has-text("${titleText}")`);
  await page.waitForFunction((t) => document.getElementById("thread-title").textContent.startsWith(t), titleText);
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
  });
  const errors = [];
  try {
    const alice = await signIn(browser, "alice", errors);
    const bob = await signIn(browser, "bob", errors);

    // 1:1, both ways.
    await alice.fill("#peer", "bob");
    await alice.click("#new-direct button");
    await send(alice, "hello bob");
    await bob.waitForSelector('#conversations li:has-text("alice") .unread');
    await openConversation(bob, "alice");
    await bob.waitForSelector('#messages li:has-text("hello bob")');
    await send(bob, "hi alice");
    await alice.waitForSelector('#messages li:has-text("hi alice")');

    // A group of the two.
    await alice.fill("#group-name", "lunch");
    await alice.fill("#group-members", "bob");
    await alice.click("#new-group button");
    await alice.waitForFunction(() => document.getElementById("thread-title").textContent.startsWith("lunch"));
    await send(alice, "noon?");
    await bob.waitForSelector('#conversations li:has-text("lunch")');
    await openConversation(bob, "lunch");
    await bob.waitForSelector('#messages li:has-text("noon?")');
    await send(bob, "noon works");
    await alice.waitForSelector('#messages li:has-text("noon works")');

    // bob goes offline; alice sends three; bob comes back and resyncs.
    await openConversation(bob, "alice");
    await bob.evaluate(() => { state.stopped = true; state.ws.close(1000, "offline"); });
    await bob.waitForFunction(() => document.getElementById("conn-status").textContent.startsWith("Disconnected"));
    await openConversation(alice, "bob");
    for (const t of ["missed one", "missed two", "missed three"]) await send(alice, t);
    await bob.evaluate(() => { state.stopped = false; connect(); });
    await bob.waitForSelector('#banner:has-text("synced")');
    await bob.waitForSelector('#messages li:has-text("missed three")');
    const got = await bodies(bob);
    const want = ["hello bob", "hi alice", "missed one", "missed two", "missed three"];
    check(JSON.stringify(got) === JSON.stringify(want), `bob's 1:1 after resync is ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
    const ids = await msgids(bob);
    check(ids.every((id, i) => i === 0 || id > ids[i - 1]), "msgids increase: " + ids);
    await bob.screenshot({ path: path.join(artifacts, "console-chat.png") });

    // The event view shows the exchange.
    await bob.click("#tab-events");
    await bob.waitForFunction(() => document.querySelectorAll("#events tbody tr").length >= 8);
    const types = await bob.$$eval("#events tbody tr td:nth-child(2)", (els) => els.map((e) => e.textContent));
    check(types.filter((t) => t === "MessageSent.v1").length === 7, "7 MessageSent.v1 rows, got " + JSON.stringify(types));
    check(types.includes("GroupCreated.v1"), "a GroupCreated.v1 row");
    await bob.fill("#filter", "GroupCreated");
    await bob.waitForFunction(() => document.querySelectorAll("#events tbody tr").length === 1);
    await bob.fill("#filter", "");
    await bob.waitForSelector("#lag tbody tr");
    await bob.screenshot({ path: path.join(artifacts, "console-events.png") });

    // Phone width stays usable.
    await alice.setViewportSize({ width: 390, height: 800 });
    await alice.screenshot({ path: path.join(artifacts, "console-phone.png") });

    check(errors.length === 0, "console errors: " + JSON.stringify(errors));
    console.log("console e2e: ok");
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
