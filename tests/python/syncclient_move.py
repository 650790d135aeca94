"""PyPI `syncclient` 0.8.0 (with `requests-hawk`) following its account to another
storage node, as Firefox does (tests/nodes.rs drives it).

syncclient has no token renewal of its own: what Firefox does around it is the glue
here (`Browser`). Firefox keeps using its token until the storage node answers 401,
then asks the token server again, takes the `api_endpoint` it is given and, finding
the new node empty, uploads its records again. Every storage request below is
syncclient's own HTTP and Hawk code.

Usage: syncclient_move.py upload|follow. Environment: SC_TOKEN_URL (the tokenserver
root, e.g. http://127.0.0.1:PORT/token), SC_BEARER (a JWT access token), SC_KEYID
(X-KeyID), SC_STATE (a JSON file: what `upload` leaves for `follow`, as a browser keeps
its token and records between syncs). Exits non-zero on failure.
"""

import json
import os
import sys
import time

import requests
from syncclient.client import SyncClient


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what)


def get_credentials():
    # syncclient's TokenserverClient sends BrowserID; today's clients send a bearer
    # token and X-KeyID to the same URL.
    url = os.environ["SC_TOKEN_URL"].rstrip("/") + "/1.0/sync/1.5"
    resp = requests.get(
        url,
        headers={
            "Authorization": "Bearer " + os.environ["SC_BEARER"],
            "X-KeyID": os.environ["SC_KEYID"],
        },
        timeout=10,
    )
    check(resp.status_code == 200, "token: %s %s" % (resp.status_code, resp.text))
    return resp.json()


def sync_client(creds):
    client = SyncClient(**creds)
    # requests-hawk 1.2.1 asks mohawk 1.1.0 to hash every payload, and mohawk refuses
    # body-less requests (GET, DELETE) then: hash only when there is a body.
    client.auth.always_hash_content = False
    return client


JSON = {"headers": {"Accept": "application/json"}}

# The browser's local data, uploaded to whichever node holds the account.
RECORDS = [
    ("bookmarks", {"id": "bm1", "payload": "first bookmark", "sortindex": 2}),
    ("bookmarks", {"id": "bm2", "payload": "second bookmark", "sortindex": 1}),
    ("history", {"id": "h1", "payload": "a visit", "sortindex": 0}),
]


class Browser(object):
    """The token a browser holds and the one thing Firefox does around syncclient's
    calls: on a 401 from the storage node, a new token (and whatever api_endpoint it
    names), then the call once more."""

    def __init__(self, creds=None, issued=None):
        self.creds, self.issued = creds, issued
        self.client = sync_client(creds) if creds else None

    def sign_in(self):
        self.issued = time.time()
        self.creds = get_credentials()
        self.client = sync_client(self.creds)

    def call(self, method, *args, **kwargs):
        try:
            return getattr(self.client, method)(*args, **kwargs)
        except requests.exceptions.HTTPError as e:
            if e.response.status_code != 401:
                raise
        before = self.creds["api_endpoint"]
        self.sign_in()
        print("401 from %s: new token for %s" % (before, self.creds["api_endpoint"]))
        return getattr(self.client, method)(*args, **kwargs)


def upload_all(browser):
    for collection, record in RECORDS:
        browser.call("put_record", collection, dict(record))
    got = sorted(r["id"] for r in browser.call("get_records", "bookmarks", **JSON))
    check(got == ["bm1", "bm2"], "bookmarks read back: %r" % got)
    check(browser.call("get_record", "history", "h1")["payload"] == "a visit",
          "history read back")
    check(browser.call("get_collection_counts") == {"bookmarks": 2, "history": 1},
          "collection counts")


def upload(state_file):
    browser = Browser()
    browser.sign_in()
    check(browser.call("info_collections") == {}, "a new account starts empty")
    upload_all(browser)
    with open(state_file, "w") as f:
        json.dump({"creds": browser.creds, "issued": browser.issued}, f)
    print("uploaded uid=%s endpoint=%s" % (browser.creds["uid"], browser.creds["api_endpoint"]))


def follow(state_file):
    with open(state_file) as f:
        state = json.load(f)
    old = state["creds"]
    browser = Browser(old, state["issued"])
    # Sync as usual with the token held: the old node serves it until it expires (how
    # many times depends on how soon a loaded machine gets here), then answers 401,
    # and the browser's new token names another node.
    served = 0
    deadline = state["issued"] + old["duration"] + 10
    while True:
        info = browser.call("info_collections")
        if browser.creds["api_endpoint"] != old["api_endpoint"]:
            break
        if set(info) != {"bookmarks", "history"}:
            raise AssertionError("the old node lost the data: %r" % info)
        served += 1
        if time.time() > deadline:
            raise AssertionError("still on %s %d s after the token was issued"
                                 % (old["api_endpoint"], old["duration"] + 10))
        time.sleep(0.25)
    print("synced %d time(s) on the old node before its 401" % served)
    creds = browser.creds
    check(creds["uid"] != old["uid"], "a new uid: %s -> %s" % (old["uid"], creds["uid"]))
    check(info == {}, "the new node has nothing for the account: %r" % info)
    # ... so the browser uploads its local data again.
    upload_all(browser)
    print("moved uid=%s endpoint=%s" % (creds["uid"], creds["api_endpoint"]))
    print("syncclient move: all good")


def main():
    phase = sys.argv[1]
    state_file = os.environ["SC_STATE"]
    {"upload": upload, "follow": follow}[phase](state_file)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # report, then fail the test
        print("FAILED: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        raise
