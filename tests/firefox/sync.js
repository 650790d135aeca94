// Chrome-privileged helpers for tests/firefox_sync.rs, run by Marionette in a browser
// window's chrome context (tests/common/firefox.rs prepends this file to every call and
// runs `api[name](args)`). Everything goes through Firefox's own APIs: the account
// state through FxAccounts, data through Places, the login manager, form history,
// the tab browser and prefs, and syncs through Weave.Service, so the records that reach
// the server are the ones a person's Firefox would write.

/* global gBrowser */
/* eslint-disable no-undef */

const { Weave } = ChromeUtils.importESModule(
  "resource://services-sync/main.sys.mjs"
);
const { getFxAccountsSingleton } = ChromeUtils.importESModule(
  "resource://gre/modules/FxAccounts.sys.mjs"
);
const { PlacesUtils } = ChromeUtils.importESModule(
  "resource://gre/modules/PlacesUtils.sys.mjs"
);
const { Observers } = ChromeUtils.importESModule(
  "resource://services-common/observers.sys.mjs"
);
const { FormHistory } = ChromeUtils.importESModule(
  "resource://gre/modules/FormHistory.sys.mjs"
);
const SCOPE_SYNC = "https://identity.mozilla.com/apps/oldsync";
const fxAccounts = getFxAccountsSingleton();

const TOPICS = [
  "weave:service:sync:start",
  "weave:service:sync:finish",
  "weave:service:sync:error",
  "weave:service:login:error",
  "weave:engine:sync:applied",
  "weave:engine:sync:uploaded",
  "weave:engine:sync:error",
];

// Every sync this browser runs, the test's and Firefox's own (the one after sign-in),
// from Sync's own notifications; kept on the browser window, which outlives each
// Marionette call.
function recorder() {
  const win = mainWindow();
  if (win.__syncTestRecorder) {
    return win.__syncTestRecorder;
  }
  const rec = { done: [], current: null };
  const observe = (subject, topic, data) => {
      if (topic == "weave:service:sync:start") {
        let why = "?";
        try {
          why = JSON.parse(data).why;
        } catch (e) {}
        rec.current = { why, engines: {}, started: Date.now() };
        return;
      }
      // A sync whose login fails (no token, keys that do not decrypt crypto/keys) ends
      // before it starts: recorded as a sync of its own.
      if (topic == "weave:service:login:error" && !rec.current) {
        rec.current = { why: rec.requested || "login", engines: {}, started: Date.now() };
      }
      const cur = rec.current || (rec.current = { why: "?", engines: {} });
      if (
        topic == "weave:service:sync:finish" ||
        topic == "weave:service:sync:error" ||
        topic == "weave:service:login:error"
      ) {
        cur.outcome = topic.replace("weave:service:", "").replace("sync:", "");
        cur.sync = Weave.Status.sync;
        cur.service = Weave.Status.service;
        cur.login = Weave.Status.login;
        const token = Weave.Service.identity._token;
        cur.uid = token ? token.uid : null;
        cur.seconds = (Date.now() - (cur.started || Date.now())) / 1000;
        rec.done.push(cur);
        rec.current = null;
        return;
      }
      const e = (cur.engines[data] ??= {});
      switch (topic) {
        case "weave:engine:sync:applied":
          e.applied = (e.applied || 0) + (subject.applied || 0);
          e.failed = (e.failed || 0) + (subject.failed || 0);
          e.reconciled = (e.reconciled || 0) + (subject.reconciled || 0);
          break;
        case "weave:engine:sync:uploaded":
          e.sent = (e.sent || 0) + (subject.sent || 0);
          e.uploadFailed = (e.uploadFailed || 0) + (subject.failed || 0);
          break;
        case "weave:engine:sync:error":
          // A failed request is thrown as its response, which prints as [object Object].
          e.error =
            subject && typeof subject == "object" && "status" in subject
              ? `HTTP ${subject.status}`
              : String(subject);
          break;
      }
  };
  for (const topic of TOPICS) {
    // Sync notifies through Observers.sys.mjs, which unwraps the subject for us.
    Observers.add(topic, (subject, data) => observe(subject, topic, data));
  }
  win.__syncTestRecorder = rec;
  return rec;
}

// The test decides when Firefox syncs: no sync triggered by the change score of local
// edits (Firefox's scheduler would otherwise start one at a moment of its choosing,
// racing the other browser's). The sync after sign-in still happens and is recorded.
function holdScheduler() {
  const scheduler = Weave.Service.scheduler;
  if (!scheduler.__syncTestHeld) {
    Object.defineProperty(scheduler, "syncThreshold", {
      get: () => 1e9,
      set: () => {},
      configurable: true,
    });
    scheduler.__syncTestHeld = true;
  }
}

function sleep(ms) {
  return new Promise(resolve => setTimeout(resolve, ms));
}

async function waitFor(what, check, ms = 30000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) {
      return value;
    }
    if (Date.now() > deadline) {
      throw new Error(`waited ${ms} ms for ${what}`);
    }
    await sleep(50);
  }
}

function syncUsername() {
  return Services.prefs.getStringPref("services.sync.username", "");
}

function mainWindow() {
  return Services.wm.getMostRecentWindow("navigator:browser");
}

// A bookmark tree as the test compares it: what a person sees (type, title, URL,
// order) plus the GUIDs, which Sync keeps across devices.
function normalizeBookmark(node) {
  const out = { guid: node.guid, title: node.title || "" };
  if (node.uri) {
    out.url = node.uri;
  }
  if (node.type == PlacesUtils.TYPE_X_MOZ_PLACE_SEPARATOR) {
    out.separator = true;
  }
  if (node.children) {
    out.children = node.children.map(normalizeBookmark);
  }
  return out;
}

function normalizeLogin(l) {
  return {
    guid: l.guid,
    origin: l.origin,
    formActionOrigin: l.formActionOrigin,
    httpRealm: l.httpRealm,
    username: l.username,
    password: l.password,
    usernameField: l.usernameField,
    passwordField: l.passwordField,
  };
}

var api = {
  // Signs in to the fake account server's account with the given sync key: the state
  // Firefox keeps after a real sign-in (a verified session, the oldsync scoped key).
  async signIn({ uid, email, kid, k, prefs }) {
    // Sync's auth manager must be listening for the sign-in.
    await Weave.Service.promiseInitialized;
    // The account server's URLs: a sign-out puts them back to Mozilla's, as after a
    // real password reset the user signs in again on the configured server.
    for (const [name, value] of Object.entries(prefs)) {
      Services.prefs.setStringPref(name, value);
    }
    fxAccounts.resetFxAccountsClient();
    await fxAccounts._internal.setSignedInUser({
      uid,
      email,
      // Never checked by the stand-in account server; FxA sessions are 64 hex digits.
      sessionToken: uid + uid,
      verified: true,
      scopedKeys: {
        [SCOPE_SYNC]: { kid, k, kty: "oct", scope: SCOPE_SYNC },
      },
    });
    const rec = recorder();
    const before = rec.done.length;
    holdScheduler();
    // What the sign-in page's "sync this browser" does: Sync takes the signed-in user
    // (and starts its first sync).
    await Weave.Service.configure();
    await waitFor("Sync to take the account", async () => {
      const user = await fxAccounts.getSignedInUser();
      return user && user.verified && syncUsername();
    });
    await waitFor("the first sync to end", () => rec.done.length > before, 120000);
    await waitFor("the first sync to end", () => !Weave.Service.locked, 120000);
    return rec.done.splice(0);
  },

  // Signs out (as Firefox does when the account's password was reset): Sync forgets the
  // server state, the local data stays.
  async signOut() {
    await fxAccounts.signOut(true);
    await waitFor("Sync to forget the account", () => !syncUsername());
    return null;
  },

  // One full sync, started here and waited for. Returns every sync the browser ran
  // since the last call (Firefox's own too), each with its status and what each engine
  // did; the last is ours.
  async sync() {
    await Weave.Service.promiseInitialized;
    const rec = recorder();
    for (let attempt = 0; ; attempt++) {
      // A sync Firefox started by itself holds the lock; ours would be skipped.
      await waitFor("the running sync to end", () => !Weave.Service.locked, 120000);
      // A failed sync leaves a back-off that would make Firefox refuse the next one.
      Weave.Status.resetBackoff();
      const before = rec.done.length;
      rec.requested = "test";
      try {
        await Weave.Service.sync({ why: "test" });
      } finally {
        rec.requested = null;
      }
      if (rec.done.slice(before).some(s => s.why == "test") || attempt > 20) {
        break;
      }
      await sleep(100);
    }
    return rec.done.splice(0);
  },

  // Starts a sync without waiting for it (for the restart test).
  async startSync() {
    await Weave.Service.promiseInitialized;
    await waitFor("the running sync to end", () => !Weave.Service.locked, 120000);
    Weave.Status.resetBackoff();
    recorder();
    Weave.Service.sync({ why: "test" });
    await waitFor("the sync to start", () => Weave.Service.locked, 10000);
    return null;
  },

  async waitSyncIdle() {
    await waitFor("the running sync to end", () => !Weave.Service.locked, 200000);
    return recorder().done.splice(0);
  },

  // Firefox's own download limits of an engine, lowered so that a handful of records
  // take the paths thousands would.
  async setEngineLimits({ engine, downloadLimit, downloadBatchSize }) {
    const e = Weave.Service.engineManager.get(engine);
    if (downloadLimit !== undefined) {
      e.downloadLimit = downloadLimit;
    }
    if (downloadBatchSize !== undefined) {
      e.downloadBatchSize = downloadBatchSize;
    }
    return null;
  },

  // ---- bookmarks

  async insertBookmarks({ parent, children }) {
    const root = parent || PlacesUtils.bookmarks.menuGuid;
    const convert = node => {
      const out = { guid: node.guid, title: node.title };
      if (node.url) {
        out.url = node.url;
      } else if (node.separator) {
        out.type = PlacesUtils.bookmarks.TYPE_SEPARATOR;
        delete out.title;
      } else {
        out.type = PlacesUtils.bookmarks.TYPE_FOLDER;
        out.children = (node.children || []).map(convert);
      }
      return out;
    };
    await PlacesUtils.bookmarks.insertTree({
      guid: root,
      children: children.map(convert),
    });
    return null;
  },

  async bookmarkTree({ guid }) {
    const tree = await PlacesUtils.promiseBookmarksTree(guid);
    return tree ? normalizeBookmark(tree) : null;
  },

  async bookmark({ guid }) {
    const b = await PlacesUtils.bookmarks.fetch(guid);
    return b ? { guid: b.guid, title: b.title, url: b.url ? b.url.href : null, parentGuid: b.parentGuid, index: b.index } : null;
  },

  async updateBookmark({ guid, title, url }) {
    const info = { guid };
    if (title !== undefined) {
      info.title = title;
    }
    if (url !== undefined) {
      info.url = url;
    }
    await PlacesUtils.bookmarks.update(info);
    return null;
  },

  async removeBookmark({ guid }) {
    await PlacesUtils.bookmarks.remove(guid);
    return null;
  },

  async manyBookmarks({ folder, count }) {
    const children = [];
    for (let i = 0; i < count; i++) {
      children.push({
        title: `Bulk ${i}`,
        url: `http://bulk.example/${i}`,
      });
    }
    await PlacesUtils.bookmarks.insertTree({
      guid: PlacesUtils.bookmarks.menuGuid,
      children: [
        { guid: folder, title: "Bulk", type: PlacesUtils.bookmarks.TYPE_FOLDER, children },
      ],
    });
    return null;
  },

  // ---- history

  async addVisits({ pages }) {
    await PlacesUtils.history.insertMany(
      pages.map(p => ({
        url: p.url,
        title: p.title,
        visits: p.visits.map(ms => ({
          date: new Date(ms),
          transition: PlacesUtils.history.TRANSITIONS.LINK,
        })),
      }))
    );
    return null;
  },

  async history({ urls }) {
    const out = {};
    for (const url of urls) {
      const page = await PlacesUtils.history.fetch(url, { includeVisits: true });
      out[url] = page
        ? {
            title: page.title,
            visits: page.visits
              .map(v => ({ date: v.date.getTime(), transition: v.transition }))
              .sort((a, b) => a.date - b.date),
          }
        : null;
    }
    return out;
  },

  async removeHistory({ url }) {
    await PlacesUtils.history.remove(url);
    return null;
  },

  // ---- passwords

  async addLogin(l) {
    const info = Cc["@mozilla.org/login-manager/loginInfo;1"].createInstance(
      Ci.nsILoginInfo
    );
    info.init(
      l.origin,
      l.formActionOrigin ?? null,
      l.httpRealm ?? null,
      l.username,
      l.password,
      l.usernameField ?? "",
      l.passwordField ?? ""
    );
    const added = await Services.logins.addLoginAsync(info);
    return added.QueryInterface(Ci.nsILoginMetaInfo).guid;
  },

  // The saved logins (not the account's own key storage, which is one too).
  async logins() {
    const all = await Services.logins.getAllLogins();
    return all
      .filter(l => !l.origin.startsWith("chrome://"))
      .map(normalizeLogin).sort((a, b) => (a.guid < b.guid ? -1 : 1));
  },

  async removeLogin({ guid }) {
    const all = await Services.logins.getAllLogins();
    const login = all.find(l => l.guid == guid);
    if (!login) {
      throw new Error(`no login ${guid}`);
    }
    await Services.logins.removeLoginAsync(login);
    return null;
  },

  // ---- form history

  async addFormEntries({ entries }) {
    await FormHistory.update(
      entries.map(e => ({ op: "add", fieldname: e.fieldname, value: e.value }))
    );
    return null;
  },

  async formEntries({ fieldname }) {
    const rows = await FormHistory.search(["fieldname", "value"], { fieldname });
    return rows.map(r => r.value).sort();
  },

  // ---- addresses and credit cards (form autofill)

  async addAutofill({ kind, record }) {
    const { formAutofillStorage } = ChromeUtils.importESModule(
      "resource://autofill/FormAutofillStorage.sys.mjs"
    );
    await formAutofillStorage.initialize();
    return formAutofillStorage[kind].add(record);
  },

  // What a person sees of each saved address or card (the card number masked, as the
  // stored one is encrypted with this profile's own OS key).
  async autofill({ kind, fields }) {
    const { formAutofillStorage } = ChromeUtils.importESModule(
      "resource://autofill/FormAutofillStorage.sys.mjs"
    );
    await formAutofillStorage.initialize();
    const all = await formAutofillStorage[kind].getAll();
    return all
      .map(r => Object.fromEntries(fields.map(f => [f, r[f] ?? null])))
      .sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));
  },

  // ---- prefs

  async setPref({ name, value }) {
    Services.prefs.setStringPref(name, value);
    return null;
  },

  async getPref({ name }) {
    return Services.prefs.getStringPref(name, "");
  },

  // ---- tabs

  async openTabs({ urls }) {
    const win = mainWindow();
    const principal = Services.scriptSecurityManager.getSystemPrincipal();
    for (const url of urls) {
      const tab = win.gBrowser.addTab(url, { triggeringPrincipal: principal });
      await waitFor(`${url} to load`, () => tab.linkedBrowser.currentURI.spec == url &&
        !tab.hasAttribute("busy"));
    }
    return null;
  },

  // The other devices' open tabs, as Firefox's synced-tabs list shows them.
  async remoteTabs() {
    const engine = Weave.Service.engineManager.get("tabs");
    const clients = await engine.getAllClients();
    return clients.map(c => ({
      name: c.name,
      fxaDeviceId: c.fxaDeviceId,
      tabs: c.tabs.map(t => ({ title: t.title, url: t.urlHistory[0] })),
    }));
  },

  // What FxA's "device connected" push message makes Firefox do (push is off here):
  // fetch the account's device list again, so the new device's records are not taken
  // for a disconnected one's.
  async deviceConnected() {
    if (!(await fxAccounts.getSignedInUser())) {
      return null;
    }
    await fxAccounts.device.refreshDeviceList({ ignoreCached: true });
    return null;
  },

  async localClient() {
    const clients = Weave.Service.clientsEngine;
    return {
      id: clients.localID,
      name: clients.localName,
      fxaDeviceId: await fxAccounts.device.getLocalId(),
    };
  },
};

// The entry point (tests/common/firefox.rs): JSON in and out, since only strings cross
// into Marionette's sandbox unharmed.
async function callJson(name, argsJson) {
  const value = await api[name](JSON.parse(argsJson));
  return JSON.stringify(value === undefined ? null : value);
}
