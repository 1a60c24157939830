// Browser test of the Parley console, driven by cmd/parley's
// TestConsoleInBrowser: node console.e2e.js <base URL> <artifacts dir>.
// Two pages as two accounts chat both ways and in a group; a third account
// signs in for the first time to a waiting message without being told it
// reconnected, after mistyping her name (each bad id is explained beside
// its field, by the page or by the server); one page's network fails while the other sends, and the page
// reconnects by itself, shows every missed message exactly once in msgid
// order and says how many it missed; the event view shows the exchange, with
// nothing cut at 1280 px and every field of every event at phone width.
// Screenshots of both views go to the artifacts dir (the README's
// docs/console-*.png are copies of them).
const { chromium } = require("playwright-core");
const path = require("path");

const [base, artifacts] = process.argv.slice(2);
const timeout = 20000;

function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
}

// openConsole opens the console in a browser context of its own, noting
// console errors and any request outside Parley in errors. With net, the
// page's WebSockets go through it (see network).
async function openConsole(browser, name, errors, net) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(timeout);
  page.on("console", (m) => { if (m.type() === "error") errors.push(`${name}: ${m.text()}`); });
  page.on("pageerror", (e) => errors.push(`${name}: ${e.message}`));
  page.on("request", (r) => { if (!r.url().startsWith(base) && !r.url().startsWith("ws://") && !r.url().startsWith("data:")) errors.push(`${name}: external request ${r.url()}`); });
  if (net) await page.routeWebSocket(/\/ws$/, (ws) => net.route(ws));
  await page.goto(base + "/console/");
  return page;
}

// signIn signs page in as account and waits for the first sync, which
// loads the history: that is no reconnect, so no "Reconnected" banner.
async function signIn(page, account) {
  await page.fill("#account", account);
  await page.click("#signin-button");
  await page.waitForFunction(() => document.getElementById("conn-status").textContent.startsWith("Connected") && state.syncs > 0);
  check(await page.isHidden("#signin"), "sign-in form hidden after sign-in");
  const b = await page.textContent("#banner");
  check(b === "", `${account}'s first sign-in shows no banner, got ${JSON.stringify(b)}`);
}

// fieldError checks that the sign-in form refused the id in field (account
// or device) with an error that contains want and says what is allowed,
// shown beside the field, bound to it (aria-describedby, aria-invalid)
// and focused, and returns its text.
async function fieldError(page, field, want) {
  await page.waitForSelector(`#${field}-error:has-text(${JSON.stringify(want)})`);
  const got = await page.evaluate((field) => {
    const input = document.getElementById(field), p = document.getElementById(field + "-error");
    const i = input.getBoundingClientRect(), e = p.getBoundingClientRect();
    return {
      text: p.textContent, visible: !p.hidden && e.width > 0 && e.height > 0,
      beside: e.top >= i.bottom - 1 && e.top - i.bottom < 24 && Math.abs(e.left - i.left) < 24,
      invalid: input.getAttribute("aria-invalid"), describedBy: (input.getAttribute("aria-describedby") || "").split(" "),
      focused: document.activeElement === input, signInShown: !document.getElementById("signin").hidden,
    };
  }, field);
  const where = `${field} error ${JSON.stringify(got)}`;
  check(got.visible && got.beside, where + ": shown just under its field");
  check(got.text.includes("Allowed: 1 to 64 characters, using unaccented letters, digits, dots (.), underscores (_), @ and hyphens (-)."), where + ": says what is allowed");
  check(got.invalid === "true" && got.describedBy.includes(field + "-error"), where + ": bound to the field (aria-invalid, aria-describedby)");
  check(got.signInShown, where + ": the sign-in form stays");
  return got;
}

// network stands for the network under a page's WebSockets: down() cuts
// the open ones as a failing network would, from outside the page, and
// refuses new ones until up(). The page's own reconnect logic does the rest.
function network() {
  const open = new Set();
  let up = true;
  return {
    route(ws) {
      if (!up) { ws.close({ code: 1001, reason: "network down" }).catch(() => {}); return; }
      open.add({ page: ws, server: ws.connectToServer() });
    },
    async down() {
      up = false;
      for (const c of open) {
        await c.page.close({ code: 1001, reason: "network down" }).catch(() => {});
        await c.server.close().catch(() => {});
      }
      open.clear();
    },
    up() { up = true; },
  };
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

// cutEventFields lists every field of the shown events that is not wholly
// visible: cut (its text wider than its box), with no box, or sticking out
// of the viewport or the table's box sideways. The table box must not
// scroll sideways either. Empty means every field can be read.
async function cutEventFields(page) {
  return page.evaluate(() => {
    const cut = [];
    const wrap = document.querySelector(".table-wrap");
    if (wrap.scrollWidth > wrap.clientWidth) cut.push(`the table scrolls sideways: ${wrap.scrollWidth} > ${wrap.clientWidth}`);
    const box = wrap.getBoundingClientRect();
    const left = Math.max(0, box.left) - 1, right = Math.min(innerWidth, box.right) + 1;
    document.querySelectorAll("#events tbody tr").forEach((tr, row) => {
      for (const td of tr.cells) {
        const r = td.getBoundingClientRect();
        const what = `row ${row} ${td.className} ${JSON.stringify(td.textContent)}`;
        if (r.width === 0 || r.height === 0 || getComputedStyle(td).visibility !== "visible") cut.push(what + " has no box");
        else if (td.scrollWidth > td.clientWidth) cut.push(`${what} is cut: ${td.scrollWidth} > ${td.clientWidth}`);
        else if (r.left < left || r.right > right) cut.push(`${what} is outside [${left}, ${right}]: [${r.left}, ${r.right}]`);
      }
    });
    return cut;
  });
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
    const alice = await openConsole(browser, "alice", errors);
    await signIn(alice, "alice");
    const bobNet = network();
    const bob = await openConsole(browser, "bob", errors, bobNet);
    await signIn(bob, "bob");

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

    // A group whose long name makes a long event summary, to wrap.
    const longName = "Quarterly planning offsite for the platform, messaging and operations teams";
    await alice.fill("#group-name", longName);
    await alice.fill("#group-members", "carol");
    await alice.click("#new-group button");
    await alice.waitForFunction((n) => document.getElementById("thread-title").textContent.startsWith(n), longName);

    // carol signs in for the first time, with a message and a group waiting:
    // her first sync loads them, and that is no reconnect (signIn checks).
    await alice.fill("#peer", "carol");
    await alice.click("#new-direct button");
    await send(alice, "welcome carol");
    const carol = await openConsole(browser, "carol", errors);

    // Before that, carol mistypes. Each bad id is explained beside its
    // field; the first one gets the focus. Keyboard only: Enter submits.
    await carol.fill("#account", "carol smith");
    await carol.fill("#device", "web/2");
    await carol.press("#device", "Enter");
    check((await fieldError(carol, "account", "An account name cannot contain a space.")).focused, "the account field has the focus");
    await fieldError(carol, "device", "A device name cannot contain “/”.");
    await carol.fill("#device", "web");
    check(await carol.isHidden("#device-error") && (await carol.getAttribute("#device", "aria-invalid")) === null,
      "a fixed device clears its error");
    for (const [account, want] of [["carol/home", "An account name cannot contain “/”."],
      ["c".repeat(65), "An account name can have at most 64 characters; this one has 65."], ["", "Enter an account name."]]) {
      await carol.fill("#account", account);
      await carol.press("#account", "Enter");
      check((await fieldError(carol, "account", want)).focused, `the account field has the focus after ${JSON.stringify(account)}`);
    }
    // The server's refusal is shown the same way: a page whose own check
    // lets the name through (no pattern) gets the server's invalid_argument.
    const pattern = await carol.getAttribute("#account", "pattern");
    await carol.evaluate(() => document.getElementById("account").removeAttribute("pattern"));
    await carol.fill("#account", "carol smith");
    const before = errors.length;
    const [answer] = await Promise.all([
      carol.waitForResponse((r) => r.url().endsWith("/console/api/token")),
      carol.waitForEvent("console", (m) => m.type() === "error"),
      carol.press("#account", "Enter"),
    ]);
    const refused = await answer.json();
    check(answer.status() === 400 && refused.code === "invalid_argument" && refused.field === "account",
      `the server refuses "carol smith": ${answer.status()} ${JSON.stringify(refused)}`);
    check((await fieldError(carol, "account", "The server refused it: invalid account:")).focused, "the account field has the focus after the server's refusal");
    await carol.screenshot({ path: path.join(artifacts, "console-signin-error.png") });
    // Chromium logs any 4xx answer as an error; this one was asked for.
    const logged = errors.splice(before);
    check(JSON.stringify(logged) === JSON.stringify(["carol: Failed to load resource: the server responded with a status of 400 (Bad Request)"]),
      "the refusal is the only error logged: " + JSON.stringify(logged));
    await carol.evaluate((p) => document.getElementById("account").setAttribute("pattern", p), pattern);
    await signIn(carol, "carol");
    check(await carol.isHidden("#account-error"), "no account error once signed in");
    await carol.waitForSelector('#conversations li:has-text("alice") .unread');
    await carol.waitForSelector(`#conversations li:has-text("${longName}")`);

    // bob's network fails; alice sends three; bob's page reconnects by
    // itself and syncs exactly the three it missed, which the banner counts.
    await openConversation(bob, "alice");
    await bobNet.down();
    await bob.waitForFunction(() => document.getElementById("conn-status").textContent.includes("reconnecting"));
    await openConversation(alice, "bob");
    for (const t of ["missed one", "missed two", "missed three"]) await send(alice, t);
    bobNet.up();
    await bob.waitForSelector('#banner:has-text("Reconnected")', { timeout: 30000 });
    const reconnected = await bob.textContent("#banner");
    check(reconnected === "Reconnected: synced 3 missed messages", `bob's banner after the reconnect is ${JSON.stringify(reconnected)}`);
    await bob.waitForSelector('#messages li:has-text("missed three")');
    const got = await bodies(bob);
    const want = ["hello bob", "hi alice", "missed one", "missed two", "missed three"];
    check(JSON.stringify(got) === JSON.stringify(want), `bob's 1:1 after resync is ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
    const ids = await msgids(bob);
    check(ids.every((id, i) => i === 0 || id > ids[i - 1]), "msgids increase: " + ids);
    await bob.screenshot({ path: path.join(artifacts, "console-chat.png") });

    // The event view shows the exchange.
    await bob.click("#tab-events");
    await bob.waitForFunction(() => document.querySelectorAll("#events tbody tr").length >= 10);
    const types = await bob.$$eval("#events tbody tr td:nth-child(2)", (els) => els.map((e) => e.textContent));
    check(types.filter((t) => t === "MessageSent.v1").length === 8, "8 MessageSent.v1 rows, got " + JSON.stringify(types));
    check(types.filter((t) => t === "GroupCreated.v1").length === 2, "2 GroupCreated.v1 rows, got " + JSON.stringify(types));
    await bob.fill("#filter", "GroupCreated");
    await bob.waitForFunction(() => document.querySelectorAll("#events tbody tr").length === 2);
    await bob.fill("#filter", "");
    await bob.waitForSelector("#lag tbody tr");

    // At 1280 px nothing is cut: the "What" column (the summary) included,
    // the long one wrapped in full.
    const longSummary = "alice created " + longName;
    const whats = await bob.$$eval("#events tbody td.what", (els) => els.map((e) => e.textContent));
    check(whats.includes(longSummary), `a "What" cell reads ${JSON.stringify(longSummary)}, got ${JSON.stringify(whats)}`);
    let cut = await cutEventFields(bob);
    check(cut.length === 0, "at 1280x800 every event field is visible, but: " + cut.join("; "));
    await bob.locator("#filter").blur();
    await bob.screenshot({ path: path.join(artifacts, "console-events.png") });

    // At phone width each event is a card with every field, labelled.
    await bob.setViewportSize({ width: 390, height: 844 });
    cut = await cutEventFields(bob);
    check(cut.length === 0, "at 390x844 every event field is visible, but: " + cut.join("; "));
    const wantLabels = ["Time", "Type", "Partition", "Offset", "msgid", "Key", "What"];
    const labels = await bob.$$eval("#events tbody tr:first-child td", (tds) => tds.map((td) => getComputedStyle(td, "::before").content));
    check(labels.length === wantLabels.length && labels.every((l, i) => l.startsWith(JSON.stringify(wantLabels[i]))),
      `at 390x844 an event card labels its fields ${JSON.stringify(wantLabels)}, got ${JSON.stringify(labels)}`);
    await bob.screenshot({ path: path.join(artifacts, "console-events-phone.png"), fullPage: true });
    // And at the widths around the layout's breakpoints (style.css).
    for (const width of [320, 700, 900, 901, 1000, 1220, 1221, 1600]) {
      await bob.setViewportSize({ width, height: 800 });
      cut = await cutEventFields(bob);
      check(cut.length === 0, `at ${width} px every event field is visible, but: ` + cut.join("; "));
    }
    await bob.setViewportSize({ width: 1280, height: 800 });

    // Phone width stays usable.
    await alice.setViewportSize({ width: 390, height: 800 });
    await alice.screenshot({ path: path.join(artifacts, "console-phone.png") });

    check(errors.length === 0, "console errors: " + JSON.stringify(errors));
    console.log("console e2e: ok");
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
