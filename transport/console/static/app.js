// Parley console: a chat playground speaking the WebSocket protocol of
// docs/protocol.md, and a read-only view of the event stream.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  me: null, device: null, token: null, ws: null, nextId: 1, pending: new Map(),
  convs: new Map(), // id -> conversation, see conv()
  current: null, reconnectDelay: 500, reconnectTimer: null, stopped: false, timers: [],
  // syncs counts the connections of this sign-in that said hello and
  // synced: after the first, a connection is a reconnect.
  syncs: 0,
  // connection counts the connections that said hello: what a conversation
  // learnt from readers holds for the connection it was asked on.
  connection: 0,
  listing: false, // a conversation list and its syncs are under way
};

// How long an incoming typing signal shows, and how often the console
// repeats its own while the user types (docs/protocol.md, "Typing": show
// it for 5 s; repeat every 3 s or so; the server takes one a second).
const typingShowMs = 5000, typingRepeatMs = 3000;
// How many of your latest messages of a conversation the console asks
// readers about when it opens the conversation (see seedReaders).
const readersAsked = 20;
// ---- tabs ----
for (const [tab, view] of [["tab-chat", "view-chat"], ["tab-events", "view-events"]]) {
  $(tab).addEventListener("click", () => {
    for (const t of ["tab-chat", "tab-events"]) $(t).setAttribute("aria-selected", String(t === tab));
    $("view-chat").hidden = view !== "view-chat";
    $("view-events").hidden = view !== "view-events";
    if (view === "view-events") startEvents();
  });
}

// ---- protocol ----
function request(type, fields = {}) {
  return new Promise((resolve, reject) => {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) { reject(new Error("not connected")); return; }
    const id = String(state.nextId++);
    state.pending.set(id, { resolve, reject });
    state.ws.send(JSON.stringify({ id, type, ...fields }));
    setTimeout(() => { if (state.pending.delete(id)) reject(new Error("no reply to " + type)); }, 15000);
  });
}

// Pushes carry no id; one of a type this page does not know is ignored,
// as the protocol asks: newer servers may send more.
const pushes = new Map([
  ["message", (f) => onPush(f)], ["edited", (f) => onChange(f)], ["deleted", (f) => onChange(f)],
  ["read", (f) => onRead(f)], ["typing", (f) => onTyping(f)], ["presence", (f) => presence.onPush(f)],
]);

function onFrame(f) {
  if (f.id === undefined) {
    const push = pushes.get(f.type);
    if (push) push(f);
    else if (f.type === "error") console.warn("the server refused a frame:", f.code, f.error);
    return;
  }
  const p = state.pending.get(f.id);
  if (!p) return;
  state.pending.delete(f.id);
  if (f.type === "error") p.reject(Object.assign(new Error(f.error), { code: f.code, retryAfterMs: f.retryAfterMs })); else p.resolve(f);
}

function setStatus(text) { $("conn-status").textContent = text; }

// stopConnectionWork fails the requests waiting for an answer and stops
// the heartbeat and lease timers of the current connection.
function stopConnectionWork() {
  for (const p of state.pending.values()) p.reject(new Error("connection closed"));
  state.pending.clear();
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
  presence.reset();
  $("body").disabled = $("send").disabled = true;
}

async function connect() {
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
  const ws = new WebSocket(url);
  state.ws = ws;
  // A socket replaced by a new sign-in may still be closing: what it says
  // or does no longer concerns the page, and it must not reconnect.
  ws.onmessage = (e) => {
    if (state.ws !== ws) return;
    try { onFrame(JSON.parse(e.data)); } catch (err) { console.warn(err); }
  };
  ws.onclose = (e) => {
    if (state.ws !== ws) return;
    stopConnectionWork();
    if (state.stopped) { setStatus("Disconnected"); return; }
    const final = ["unauthorized", "token_expired", "logged_out", "duplicate_login", "replaced"].includes(e.reason);
    setStatus(`Disconnected (${e.code} ${e.reason || "no reason"})` + (final ? "" : ", reconnecting…"));
    if (!final) state.reconnectTimer = setTimeout(connect, state.reconnectDelay);
    state.reconnectDelay = Math.min(state.reconnectDelay * 2, 8000);
  };
  ws.onopen = async () => {
    if (state.ws !== ws) return;
    try {
      const w = await request("hello", { token: state.token });
      state.connection++;
      state.reconnectDelay = 500;
      setStatus(`Connected as ${w.uniqueId}, lease until ${new Date(w.leaseUntil).toLocaleTimeString()}`);
      state.timers.push(setInterval(() => request("ping").catch(() => {}), Math.max(1000, w.heartbeatMs / 3)));
      state.timers.push(setInterval(renew, Math.max(1000, (w.leaseMs * 2) / 3)));
      $("body").disabled = $("send").disabled = !state.current;
      // The first sync of a sign-in loads the history: nothing was missed.
      const reconnect = state.syncs > 0;
      const missed = await syncAll();
      if (reconnect && missed > 0) banner(`Reconnected: synced ${missed} missed message${missed === 1 ? "" : "s"}`);
      state.syncs++;
      // Receipts, edits and deletions pushed while this page was away are
      // not replayed.
      const open = state.current && state.convs.get(state.current);
      if (open) catchUp(open);
    } catch (err) {
      setStatus("Hello refused: " + (err.code || err.message));
    }
  };
}

async function renew() {
  try {
    const r = await request("renew");
    setStatus(`Connected as ${state.me}/${state.device}, lease until ${new Date(r.leaseUntil).toLocaleTimeString()}`);
  } catch (err) { /* the close handler reconnects */ }
}

function banner(text) {
  $("banner").textContent = text;
  setTimeout(() => { if ($("banner").textContent === text) $("banner").textContent = ""; }, 6000);
}

// ---- conversations ----
function convTitle(id) {
  if (id.startsWith("g:")) return (state.convs.get(id) && state.convs.get(id).name) || "group " + id.slice(2, 10);
  const [, a, b] = id.split(":");
  return a === state.me ? b : a;
}

function directId(x, y) { return x < y ? `d:${x}:${y}` : `d:${y}:${x}`; }

function conv(id) {
  let c = state.convs.get(id);
  if (!c) {
    c = {
      id, cursor: { lastTime: 0, lastMsgId: 0 }, msgs: new Map(), // msgId (or "c:" + clientMsgId while sending) -> message
      name: null, members: null, // a group's, from groups
      readMsgId: 0, // this account's read cursor
      listed: { latestMsgId: 0, unread: 0 }, // what the last conversation list said
      reading: 0, // the msgId of a read under way
      readBy: new Map(), // another account -> the highest msgId it has read (receipts, readers)
      readCounts: new Map(), // msgId -> {count, of}: readers of a group too large to name them
      readersOf: 0, // how many other participants readers counted
      readersConnection: 0, // the connection readers was last asked on
      fresh: 0, // the connection on which the latest messages were read in their latest form
      typing: new Map(), // account -> until when it shows as typing (ms)
      typingSent: 0, // when this page last sent typing here (ms)
      typingRetry: 0, // the timer of a typing the server found too soon
    };
    state.convs.set(id, c);
    if (id.startsWith("d:")) queueMicrotask(() => presence.watch());
  }
  return c;
}

// unreadCount is the badge of c: the messages after this account's read
// cursor that others sent, tombstones included, as the server counts
// them. The console holds every message of a conversation it has synced;
// until then the conversation list's count stands.
function unreadCount(c) {
  if (c.cursor.lastMsgId < c.listed.latestMsgId) return c.readMsgId >= c.listed.latestMsgId ? 0 : c.listed.unread;
  let n = 0;
  for (const m of c.msgs.values()) if (m.msgId > c.readMsgId && m.from !== state.me) n++;
  return n;
}

// addMessage records m in its conversation; returns true if it was not on
// screen yet (a message of ours shown while it was being sent was).
function addMessage(m, how) {
  const c = conv(m.conversation);
  if (c.msgs.has(m.msgId)) return false;
  // A message of ours shown as "sending" is the same message.
  const local = m.from === state.me && c.msgs.get("c:" + m.clientMsgId);
  if (local) c.msgs.delete("c:" + m.clientMsgId);
  c.msgs.set(m.msgId, { ...m, state: local ? "acked" : how });
  c.typing.delete(m.from); // a message ends its sender's typing
  return !local;
}

async function sync(id) {
  const c = conv(id);
  // From the beginning, the sync brings every message in its latest form.
  if (c.cursor.lastMsgId === 0) c.fresh = state.connection;
  let got = 0;
  for (;;) {
    const r = await request("sync", { conversation: id, lastTime: c.cursor.lastTime, lastMsgId: c.cursor.lastMsgId, limit: 100 });
    for (const m of r.messages || []) {
      if (addMessage(m, "synced")) got++;
      if (m.msgId > c.cursor.lastMsgId) c.cursor.lastMsgId = m.msgId;
    }
    if (r.next) c.cursor.lastTime = r.next.lastTime;
    if (!r.hasMore) break;
  }
  render();
  markRead(c);
  return got;
}

// refresh asks, once per connection, for the edits, deletions and
// erasures of messages c holds that were made while this page was away: a
// sync after the cursor with "changes" lists them (docs/protocol.md,
// "Changes you missed"); when there are more than one reply holds, the
// whole conversation is read again.
async function refresh(c) {
  if (c.fresh === state.connection) return;
  c.fresh = state.connection;
  if (c.cursor.lastMsgId === 0) return;
  const r = await request("sync", { conversation: c.id, lastTime: c.cursor.lastTime, lastMsgId: c.cursor.lastMsgId, limit: 1, changes: true });
  for (const m of r.changes || []) applyChange(c, m);
  if (r.changesMore) await reread(c);
  render();
}

// applyChange puts the latest form of a message c holds in its place.
function applyChange(c, m) {
  const had = c.msgs.get(m.msgId);
  if (had) Object.assign(had, { body: m.body || "", editedAt: m.editedAt || 0, deleted: m.deleted === true });
}

// reread reads every message c holds again, in its latest form.
async function reread(c) {
  let after = 0;
  while (after < c.cursor.lastMsgId) {
    const r = await request("sync", { conversation: c.id, lastMsgId: after, limit: 100 });
    for (const m of r.messages || []) if (m.msgId <= c.cursor.lastMsgId) applyChange(c, m);
    if (!r.hasMore || !r.next || r.next.lastMsgId <= after) break;
    after = r.next.lastMsgId;
  }
}

// syncAll syncs every conversation of the list that holds more than this
// page, and returns how many messages that brought. Presence is asked for
// once, when every conversation is known.
async function syncAll() {
  state.listing = true;
  let missed;
  try {
    missed = await listAndSync();
  } finally {
    state.listing = false;
  }
  presence.watch();
  return missed;
}

async function listAndSync() {
  const r = await request("conversations", { since: 0 });
  await refreshGroups();
  let missed = 0;
  for (const info of r.conversations || []) {
    const c = conv(info.conversation);
    // Read pushes sent while this page was away are not replayed: the
    // list has the cursor.
    c.readMsgId = Math.max(c.readMsgId, info.readMsgId || 0);
    c.listed = { latestMsgId: info.latestMsgId, unread: info.unread || 0 };
    if (info.latestMsgId > c.cursor.lastMsgId) missed += await sync(info.conversation);
  }
  render();
  return missed;
}

async function refreshGroups() {
  // A page holds about 1 MiB of groups; hasMore asks for the next one.
  for (let after = "", more = true; more;) {
    const page = await request("groups", after ? { after } : {});
    const list = page.groups || [];
    for (const g of list) Object.assign(conv("g:" + g.group), { name: g.name, members: g.members });
    more = !!page.hasMore && list.length > 0;
    if (more) after = list[list.length - 1].group;
  }
  render();
}

function onPush(f) {
  const m = f.message;
  const known = state.convs.has(m.conversation);
  const c = conv(m.conversation);
  if (!known && m.conversation.startsWith("g:")) refreshGroups().catch(() => {}); // learn its name
  const prev = f.prevMsgId || 0;
  if (m.msgId <= c.cursor.lastMsgId) return; // held already
  if (prev === c.cursor.lastMsgId) {
    addMessage(m, "pushed");
    c.cursor.lastMsgId = m.msgId;
    render();
    markRead(c);
    return;
  }
  // A gap: fetch what is missing, this message included.
  sync(m.conversation).catch((err) => console.warn("sync failed", err));
}

// onChange applies a pushed edit or deletion to a message on screen; one
// not held yet comes in its latest form with the sync that brings it.
function onChange(f) {
  const c = state.convs.get(f.conversation);
  const m = c && c.msgs.get(f.msgId);
  if (!m || m.deleted) return;
  if (f.type === "deleted") Object.assign(m, { body: "", editedAt: 0, deleted: true });
  else Object.assign(m, { body: f.body || "", editedAt: f.editedAt });
  render();
}

// ---- read state, receipts, typing ----
// markRead moves this account's read cursor over what the open
// conversation shows, when it holds a message of someone else's that is
// unread: the server then clears the badge on the account's other devices
// and sends the others a receipt. A page in the background reads nothing.
async function markRead(c) {
  if (state.current !== c.id || document.visibilityState !== "visible") return;
  const upTo = c.cursor.lastMsgId;
  if (upTo <= Math.max(c.readMsgId, c.reading) || unreadCount(c) === 0) return;
  c.reading = upTo;
  try {
    const r = await request("read", { conversation: c.id, msgId: upTo });
    c.readMsgId = Math.max(c.readMsgId, r.readMsgId || 0);
  } catch (err) {
    console.warn("read failed", err); // the next view of the conversation tries again
  } finally {
    c.reading = 0;
  }
  render();
}

// onRead applies a read push: this account's cursor moved on another of its
// devices (the badge follows), or a receipt of another participant.
function onRead(f) {
  const c = state.convs.get(f.conversation);
  if (!c || !f.msgId) return;
  if (f.account === state.me) c.readMsgId = Math.max(c.readMsgId, f.msgId);
  else noteReader(c, f.account, f.msgId);
  render();
}

// noteReader keeps the highest msgId account is known to have read: a
// cursor never moves back, but an older receipt may come after a newer.
function noteReader(c, account, msgId) {
  c.readBy.set(account, Math.max(c.readBy.get(account) || 0, msgId));
}

// seedReaders asks readers about this account's latest messages in c, once
// per connection, newest first, and stops at one every other participant
// has read: cursors only move forward, so they have read all before it
// too. Receipts come by push only while connected; this is what happened
// before.
async function seedReaders(c) {
  if (c.readersConnection === state.connection || c.id === directId(state.me, state.me)) return;
  c.readersConnection = state.connection;
  const mine = [...c.msgs.values()].filter((m) => m.from === state.me && m.msgId).sort((a, b) => b.msgId - a.msgId);
  for (const m of mine.slice(0, readersAsked)) {
    const r = await request("readers", { conversation: c.id, msgId: m.msgId });
    c.readersOf = r.of || 0;
    if (r.accounts) for (const a of r.accounts) noteReader(c, a, m.msgId);
    else c.readCounts.set(m.msgId, { count: r.count || 0, of: r.of || 0 });
    if ((r.count || 0) >= (r.of || 0)) break;
  }
  render();
}

// catchUp learns, once per connection, what c's pushes would have told
// this page while it was away or before it opened c.
function catchUp(c) {
  refresh(c).catch((err) => console.warn("refresh failed", err));
  seedReaders(c).catch((err) => console.warn("readers failed", err));
}

// readMark is what an own message m of c shows of its readers: "read" in a
// direct conversation, "read by k of n" in a group; "" before anyone has.
function readMark(c, m) {
  if (c.id.startsWith("d:")) {
    const peer = convTitle(c.id);
    return peer !== state.me && (c.readBy.get(peer) || 0) >= m.msgId ? "read" : "";
  }
  let k = 0;
  for (const upTo of c.readBy.values()) if (upTo >= m.msgId) k++;
  const counted = c.readCounts.get(m.msgId);
  if (counted) k = Math.max(k, counted.count);
  const of = c.readersOf || (c.members ? c.members.length - 1 : 0);
  return k > 0 ? `read by ${k} of ${Math.max(of, k)}` : "";
}

// onTyping shows account as typing in the conversation for typingShowMs
// after its latest signal, or until its message arrives.
function onTyping(f) {
  const c = state.convs.get(f.conversation);
  if (!c || !f.account || f.account === state.me) return;
  c.typing.set(f.account, Date.now() + typingShowMs);
  render();
  setTimeout(render, typingShowMs + 50);
}

// typers lists who is typing in c now, dropping those whose signal ended.
function typers(c) {
  const now = Date.now();
  for (const [a, until] of c.typing) if (until <= now) c.typing.delete(a);
  return [...c.typing.keys()].sort();
}

function typingText(names) {
  if (names.length === 0) return "";
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  return `${names.length} people are typing…`;
}

// While the user types, the others see it: one typing signal every
// typingRepeatMs at most, which keeps their indicator on. A send ends the
// signal (the message hides the indicator), so the next keystroke starts a
// new one at once; one the server finds too soon after the last (it takes
// one a second) is sent again when it says, if the user is still typing.
function sendTyping() {
  const c = state.current && state.convs.get(state.current);
  if (!c || !$("body").value || c.typingRetry || Date.now() - c.typingSent < typingRepeatMs) return;
  c.typingSent = Date.now();
  request("typing", { conversation: c.id }).catch((err) => {
    if (err.code !== "rate_limited") { console.warn("typing failed", err); return; }
    c.typingSent = 0;
    c.typingRetry = setTimeout(() => { c.typingRetry = 0; sendTyping(); }, err.retryAfterMs || 1000);
  });
}
$("body").addEventListener("input", sendTyping);

document.addEventListener("visibilitychange", () => {
  const c = state.current && state.convs.get(state.current);
  if (c) markRead(c);
});

// ---- presence ----
// Presence (issue #15) is not in docs/protocol.md yet. What this assumes,
// all of it here: a request {"type":"presence","accounts":[…]} subscribes
// this connection to those accounts, replacing or adding to what it asked
// before (it always sends the whole list, which suits either); the reply,
// of whatever type, lists their states as objects {account, online,
// lastSeen} in an array field; pushes {"type":"presence","account",
// "online","lastSeen"} follow. A server without presence answers
// unknown_type, and the console shows no dots.
const presence = {
  maxAccounts: 100, // the peers of the most recent direct conversations
  known: new Map(), // account -> {online, lastSeen}
  asked: null, // the accounts asked about on this connection, joined
  supported: true,

  reset() {
    this.known.clear();
    this.asked = null;
    this.supported = true;
  },

  // watch subscribes to the peers of this page's direct conversations.
  async watch() {
    // syncAll asks once it has learnt every conversation.
    if (!this.supported || state.listing || !state.ws || state.ws.readyState !== WebSocket.OPEN) return;
    const peers = [...state.convs.values()].filter((c) => c.id.startsWith("d:")).sort((a, b) => latest(b) - latest(a))
      .map((c) => convTitle(c.id)).filter((a) => a !== state.me).slice(0, this.maxAccounts).sort();
    const key = peers.join(",");
    if (peers.length === 0 || key === this.asked) return;
    this.asked = key;
    try {
      const r = await request("presence", { accounts: peers });
      for (const v of Object.values(r)) {
        if (Array.isArray(v)) for (const p of v) if (p && typeof p.account === "string") this.onPush(p);
      }
    } catch (err) {
      if (err.code === "unknown_type") this.supported = false;
      else console.warn("presence failed", err);
    }
  },

  onPush(f) {
    if (typeof f.account !== "string") return;
    this.known.set(f.account, { online: f.online === true, lastSeen: f.lastSeen || 0 });
    render();
  },

  // dot is the presence mark of account, or null while it is unknown.
  dot(account) {
    const p = this.known.get(account);
    if (!p) return null;
    const s = document.createElement("span");
    s.className = "presence " + (p.online ? "online" : "offline");
    const text = p.online ? "online" : "offline" + (p.lastSeen ? ", last seen " + new Date(p.lastSeen).toLocaleString() : "");
    s.title = text;
    s.setAttribute("role", "img");
    s.setAttribute("aria-label", text);
    return s;
  },
};

async function editMessage(m) {
  const text = window.prompt("Edit message", m.body);
  if (text === null || text === m.body) return;
  try {
    const ack = await request("edit", { conversation: m.conversation, msgId: m.msgId, clientMsgId: "e" + Date.now().toString(36) + Math.random().toString(36).slice(2, 8), body: text });
    Object.assign(m, { body: text, editedAt: ack.serverTime });
    render();
  } catch (err) { banner("Edit refused: " + (err.code || err.message)); }
}

async function deleteMessage(m) {
  if (!window.confirm("Delete this message for everyone?")) return;
  try {
    await request("delete", { conversation: m.conversation, msgId: m.msgId });
    Object.assign(m, { body: "", editedAt: 0, deleted: true });
    render();
  } catch (err) { banner("Delete refused: " + (err.code || err.message)); }
}

// ---- rendering ----
function render() {
  const list = $("conversations");
  list.textContent = "";
  const convs = [...state.convs.values()].sort((a, b) => latest(b) - latest(a));
  for (const c of convs) {
    const li = document.createElement("li");
    li.tabIndex = 0;
    li.dataset.conv = c.id;
    li.setAttribute("aria-current", String(c.id === state.current));
    const name = document.createElement("span");
    name.className = "name";
    const dot = c.id.startsWith("d:") && presence.dot(convTitle(c.id));
    if (dot) name.append(dot);
    name.append(convTitle(c.id));
    li.append(name);
    if (typers(c).length > 0) {
      const t = document.createElement("span");
      t.className = "typing";
      t.textContent = "typing…";
      li.append(t);
    }
    const unread = unreadCount(c);
    if (unread > 0) {
      const u = document.createElement("span");
      u.className = "unread";
      u.textContent = unread;
      u.setAttribute("aria-label", `${unread} unread`);
      li.append(u);
    }
    li.addEventListener("click", () => open(c.id));
    li.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); open(c.id); } });
    list.append(li);
  }
  const c = state.current && state.convs.get(state.current);
  const ol = $("messages");
  ol.textContent = "";
  $("typing").textContent = c ? typingText(typers(c)) : "";
  if (!c) return;
  $("thread-title").textContent = convTitle(c.id) + (c.id.startsWith("g:") ? " (group)" : "");
  $("add-member").hidden = !c.id.startsWith("g:");
  const msgs = [...c.msgs.values()].sort((a, b) => (a.msgId || Infinity) - (b.msgId || Infinity));
  for (const m of msgs) {
    const li = document.createElement("li");
    if (m.from === state.me) li.classList.add("mine");
    li.dataset.msgid = m.msgId || "";
    const body = document.createElement("div");
    body.className = "body";
    body.textContent = m.deleted ? "message deleted" : m.body;
    if (m.deleted) li.classList.add("deleted");
    const meta = document.createElement("div");
    meta.className = "meta";
    const spans = [["msgid", "msgid " + (m.msgId || "—")], ["from", m.from + "/" + m.device],
      ["time", m.serverTime ? new Date(m.serverTime).toLocaleTimeString() : ""], ["state", m.state]];
    if (m.editedAt) spans.push(["edited", "edited " + new Date(m.editedAt).toLocaleTimeString()]);
    const seen = m.from === state.me && m.msgId ? readMark(c, m) : "";
    if (seen) spans.push(["tick", "✓✓ " + seen]);
    for (const [cls, text] of spans) {
      const s = document.createElement("span");
      s.className = cls;
      s.textContent = text;
      meta.append(s);
    }
    if (m.from === state.me && m.msgId && !m.deleted) {
      for (const [label, act] of [["edit", editMessage], ["delete", deleteMessage]]) {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "msg-action";
        b.textContent = label;
        b.addEventListener("click", () => act(m));
        meta.append(b);
      }
    }
    li.append(body, meta);
    ol.append(li);
  }
  ol.scrollTop = ol.scrollHeight;
}

function latest(c) {
  let t = 0;
  for (const m of c.msgs.values()) t = Math.max(t, m.serverTime || 0);
  return t;
}

async function open(id) {
  state.current = id;
  const c = conv(id);
  $("body").disabled = $("send").disabled = !state.ws || state.ws.readyState !== WebSocket.OPEN;
  render();
  try { await sync(id); } catch (err) { banner("Sync failed: " + (err.code || err.message)); }
  catchUp(c);
  $("body").focus();
}

// ---- sign-in ----
// An account or a device id is 1 to 64 bytes of [A-Za-z0-9._@-]
// (domain/ids.go). The inputs' required and pattern attributes state that
// rule for the browser; idError explains a breach of it to people, beside
// the field, as it does the server's refusal.
const idRule = "Allowed: 1 to 64 characters, using unaccented letters, digits, dots (.), underscores (_), @ and hyphens (-).";
const idFields = { account: "An account name", device: "A device name" };

function describeChar(ch) {
  if (ch === " ") return "a space";
  if (/\s/u.test(ch)) return "a blank (U+" + ch.codePointAt(0).toString(16).toUpperCase().padStart(4, "0") + ")";
  return `“${ch}”`;
}

// idError is what is wrong with the id in input, or "" if the browser
// takes it.
function idError(input) {
  if (input.checkValidity()) return "";
  const noun = idFields[input.id], v = input.value;
  if (v === "") return `Enter ${noun.toLowerCase()}. ${idRule}`;
  const bad = v.match(/[^A-Za-z0-9._@-]/u);
  if (bad) return `${noun} cannot contain ${describeChar(bad[0])}. ${idRule}`;
  const n = new TextEncoder().encode(v).length;
  if (n > 64) return `${noun} can have at most 64 characters; this one has ${n}. ${idRule}`;
  return idRule;
}

// setFieldError shows text beside input, as its description, or clears it.
function setFieldError(input, text) {
  const p = $(input.id + "-error");
  p.textContent = text;
  p.hidden = !text;
  if (text) {
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", p.id);
  } else {
    input.removeAttribute("aria-invalid");
    input.removeAttribute("aria-describedby");
  }
}

for (const id of Object.keys(idFields)) {
  // Once an error shows, it follows the typing, and goes when it is fixed.
  $(id).addEventListener("input", () => {
    if ($(id).getAttribute("aria-invalid") === "true") setFieldError($(id), idError($(id)));
  });
}

$("signin").addEventListener("submit", async (e) => {
  e.preventDefault();
  let first = null;
  for (const id of Object.keys(idFields)) {
    const input = $(id);
    input.value = input.value.trim();
    const err = idError(input);
    setFieldError(input, err);
    if (err && !first) first = input;
  }
  if (first) { first.focus(); return; }
  state.me = $("account").value;
  state.device = $("device").value;
  try {
    if ($("token").value.trim()) {
      state.token = $("token").value.trim();
    } else {
      const r = await fetch("api/token", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ account: state.me, device: state.device }) });
      const j = await r.json();
      if (!r.ok) throw Object.assign(new Error(j.error || r.statusText), { code: j.code, field: j.field });
      state.token = j.token;
    }
  } catch (err) {
    if (err.code === "invalid_argument" && Object.hasOwn(idFields, err.field)) {
      setFieldError($(err.field), `The server refused it: ${err.message}. ${idRule}`);
      $(err.field).focus();
      return;
    }
    setStatus("Cannot sign in: " + err.message);
    return;
  }
  state.stopped = false;
  state.syncs = 0;
  $("signin").hidden = true;
  $("chat").hidden = false;
  connect();
});

$("signout").addEventListener("click", () => {
  state.stopped = true;
  clearTimeout(state.reconnectTimer);
  stopConnectionWork();
  if (state.ws) state.ws.close(1000, "signed out");
  state.convs.clear();
  state.current = null;
  $("chat").hidden = true;
  $("signin").hidden = false;
  setStatus("Not connected");
});

// ---- chat forms ----
$("new-direct").addEventListener("submit", (e) => {
  e.preventDefault();
  const peer = $("peer").value.trim();
  if (!peer) return;
  $("peer").value = "";
  open(directId(state.me, peer));
});

$("new-group").addEventListener("submit", async (e) => {
  e.preventDefault();
  const members = $("group-members").value.split(",").map((s) => s.trim()).filter(Boolean);
  try {
    const r = await request("group_create", { name: $("group-name").value.trim(), accounts: members });
    Object.assign(conv("g:" + r.group.group), { name: r.group.name, members: r.group.members });
    $("group-name").value = $("group-members").value = "";
    open("g:" + r.group.group);
  } catch (err) { banner("Cannot create the group: " + (err.code || err.message)); }
});

$("add-member").addEventListener("submit", async (e) => {
  e.preventDefault();
  const id = state.current;
  try {
    const r = await request("group_add", { group: id.slice(2), accounts: [$("new-member").value.trim()] });
    conv(id).members = r.group.members;
    $("new-member").value = "";
    banner("Member added");
  } catch (err) { banner("Cannot add: " + (err.code || err.message)); }
});

$("compose").addEventListener("submit", async (e) => {
  e.preventDefault();
  const id = state.current;
  const text = $("body").value;
  if (!id || !text) return;
  $("body").value = "";
  const c = conv(id);
  c.typingSent = 0;
  const cid = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random()).replace(/-/g, "").slice(0, 32);
  const local = { conversation: id, clientMsgId: cid, from: state.me, device: state.device, body: text, state: "sending", msgId: 0, serverTime: Date.now() };
  c.msgs.set("c:" + cid, local);
  render();
  const target = id.startsWith("g:") ? { group: id.slice(2) } : { to: convTitle(id) };
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const ack = await request("send", { ...target, clientMsgId: cid, kind: "text", body: text, retry: attempt > 0 });
      if (!c.msgs.has(ack.msgId)) {
        c.msgs.delete("c:" + cid);
        c.msgs.set(ack.msgId, { ...local, msgId: ack.msgId, serverTime: ack.serverTime, state: "acked" });
      } else {
        c.msgs.delete("c:" + cid);
      }
      render();
      return;
    } catch (err) {
      if (err.code && !["unavailable", "rate_limited"].includes(err.code)) {
        local.state = "failed: " + err.code;
        render();
        return;
      }
      await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
    }
  }
  local.state = "failed";
  render();
});

// ---- event stream view ----
// Outside local development the status and the event stream need the
// service credential as a bearer header, which EventSource cannot send:
// the stream is read with fetch, in both cases.
const consoleConfig = { devTokens: false, credential: false };
let credential = "";
let events = null; // the AbortController of the running stream
const shown = [];

function authHeaders() {
  return credential ? { Authorization: "Bearer svc:" + credential } : {};
}

let polling = false;
async function startEvents() {
  await configLoaded;
  if (events) return;
  $("credential-label").hidden = !consoleConfig.credential;
  if (consoleConfig.credential && !credential) {
    $("events-count").textContent = "The event stream needs the service credential (--service-credential).";
    return;
  }
  events = new AbortController();
  readEvents(events.signal);
  if (!polling) {
    polling = true;
    pollStatus();
    setInterval(pollStatus, 2000);
  }
}

// readEvents reads server-sent events until aborted, reconnecting after a
// drop as EventSource would.
async function readEvents(signal) {
  while (!signal.aborted) {
    try {
      const r = await fetch("api/events", { headers: authHeaders(), signal });
      if (!r.ok) throw new Error(r.status === 401 ? "wrong service credential" : r.statusText);
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let end;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          for (const line of buf.slice(0, end).split("\n")) {
            if (!line.startsWith("data: ")) continue;
            shown.push(JSON.parse(line.slice(6)));
            if (shown.length > 1000) shown.shift();
          }
          buf = buf.slice(end + 2);
          renderEvents();
        }
      }
    } catch (err) {
      if (signal.aborted) return;
      $("events-count").textContent = "Event stream: " + err.message + ", retrying…";
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}

$("credential").addEventListener("change", () => {
  credential = $("credential").value.trim();
  if (events) events.abort();
  events = null;
  shown.length = 0;
  startEvents();
});

// The columns of the event table. On a narrow screen each row becomes a
// card whose cells show their column's name (data-label, see style.css);
// the explicit ARIA roles keep the table semantics that some browsers drop
// once a table is no longer displayed as one.
const eventColumns = ["time", "type", "partition", "offset", "msgid", "key", "what"];

function renderEvents() {
  const f = $("filter").value.trim().toLowerCase();
  const tbody = $("events").tBodies[0];
  const labels = [...$("events").tHead.rows[0].cells].map((th) => th.textContent);
  tbody.textContent = "";
  let n = 0;
  for (let i = shown.length - 1; i >= 0; i--) {
    const e = shown[i];
    if (f && !`${e.type} ${e.key} ${e.summary}`.toLowerCase().includes(f)) continue;
    n++;
    const tr = document.createElement("tr");
    tr.setAttribute("role", "row");
    const values = [new Date(e.time).toLocaleTimeString(), e.type, e.partition, e.offset, e.msgId || "—", e.key, e.summary];
    values.forEach((v, col) => {
      const td = document.createElement("td");
      td.setAttribute("role", "cell");
      td.className = eventColumns[col];
      td.dataset.label = labels[col];
      td.textContent = v;
      tr.append(td);
    });
    tbody.append(tr);
  }
  $("events-count").textContent = `${n} event${n === 1 ? "" : "s"} shown`;
}
$("filter").addEventListener("input", renderEvents);

async function pollStatus() {
  try {
    const r = await fetch("api/status", { headers: authHeaders() });
    if (!r.ok) return;
    const s = await r.json();
    $("connections").textContent = `${s.connections} open connection${s.connections === 1 ? "" : "s"}`;
    const ul = $("online");
    ul.textContent = "";
    for (const u of s.online || []) { const li = document.createElement("li"); li.textContent = u; ul.append(li); }
    // One row per projection with its total, then the partitions behind.
    const byProj = new Map();
    for (const l of s.lag || []) {
      const p = byProj.get(l.projection) || { total: 0, behind: [] };
      p.total += l.records;
      if (l.records > 0) p.behind.push(l);
      byProj.set(l.projection, p);
    }
    const tbody = $("lag").tBodies[0];
    tbody.textContent = "";
    const row = (cells) => {
      const tr = document.createElement("tr");
      for (const v of cells) { const td = document.createElement("td"); td.textContent = v; tr.append(td); }
      tbody.append(tr);
    };
    for (const [name, p] of byProj) {
      row([name.replace("parley.projection.", ""), "all", p.total]);
      for (const l of p.behind) row(["", l.partition, l.records]);
    }
  } catch (err) { /* shown stale until the next poll */ }
}

// ---- start ----
const configLoaded = fetch("api/config").then((r) => r.json()).then((c) => {
  Object.assign(consoleConfig, c);
  $("token-label").hidden = c.devTokens;
}).catch(() => {});
