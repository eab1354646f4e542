package test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser starts headless Chromium for one test.
func browser(t *testing.T) context.Context {
	t.Helper()
	needProgram(t, "chromium")
	path, _ := exec.LookPath("chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.WindowSize(1280, 1600),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// Start the browser now, so a missing or broken one fails here.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// js evaluates a JavaScript expression in the page.
func js[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitPage polls a JavaScript condition in the page.
func waitPage(t *testing.T, ctx context.Context, timeout time.Duration, what, cond string) time.Duration {
	t.Helper()
	start := time.Now()
	waitFor(t, timeout, what, func() bool {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+cond+")"))
		return err == nil && ok
	})
	return time.Since(start)
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
	// The temp dir goes with the test; GEAR_TEST_SCREENSHOTS keeps a copy
	// (e.g. as a CI artifact).
	if keep := os.Getenv("GEAR_TEST_SCREENSHOTS"); keep != "" {
		if err := os.MkdirAll(keep, 0o755); err == nil {
			_ = os.WriteFile(filepath.Join(keep, t.Name()+"-"+name), b, 0o644)
		}
	}
}

// The dashboard in a real browser against a real cluster with a token:
// it shows the masters, the worker and the executors; asks for the token
// when a call needs it and then restarts and scales from the page; shows
// a kill made from the CLI within 10 s; and says STALE once its master
// is stopped.
func TestDashboardChromium(t *testing.T) {
	ctx := browser(t)
	const token = "dash-secret"
	c := newCluster(t, clusterOpts{masters: 1, workers: 1, conf: `gear.auth.token = "` + token + `"`})
	waitFor(t, 20*time.Second, "the master to lead", func() bool { return c.leader() == c.masters[0] })
	c.waitWorker()
	id, _ := c.submitRunning(example("hello.tar.gz"))
	eid := id + ".web.0"
	shots := t.TempDir()

	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+c.masters[0]+"/")); err != nil {
		t.Fatal(err)
	}
	enterToken := func() {
		t.Helper()
		waitPage(t, ctx, 10*time.Second, "the token form", `!document.getElementById("token-form").hidden`)
		js[chromedp.Void](t, ctx, `document.getElementById("token").value = "`+token+`"; document.getElementById("token-form").requestSubmit(); null`)
	}
	// Reads may or may not need the token (gear.auth.token covers them
	// where the masters require it): answer the form if it shows.
	waitPage(t, ctx, 15*time.Second, "the executors or the token form",
		`document.querySelector('tr[data-executor="`+eid+`"]') || !document.getElementById("token-form").hidden`)
	if js[bool](t, ctx, `!document.getElementById("token-form").hidden`) {
		enterToken()
	}
	waitPage(t, ctx, 15*time.Second, "executor "+eid+" RUNNING on the page",
		`document.querySelector('tr[data-executor="`+eid+`"][data-state="RUNNING"]')`)
	waitPage(t, ctx, 5*time.Second, "the master as leader and the worker alive",
		`document.querySelector('tr[data-master="`+c.masters[0]+`"]')?.textContent.includes("leader") &&
		 document.querySelector("#workers tbody tr")?.textContent.includes("alive") &&
		 document.querySelector("#workers tbody tr")?.textContent.includes("`+eid+`")`)
	waitPage(t, ctx, 10*time.Second, "the submit in the event list", `document.querySelector('#events li[data-type="submit"]')`)
	// The executor's log tail, fetched through the master when opened.
	js[chromedp.Void](t, ctx, `document.querySelector('details.tail[data-executor="`+eid+`"] summary').click(); null`)
	waitPage(t, ctx, 10*time.Second, "the log tail of "+eid,
		`document.querySelector('pre[data-log="`+eid+`"]')?.textContent.includes("hello: ")`)
	if stale := js[string](t, ctx, `document.body.dataset.stale`); stale != "0" {
		t.Fatalf("the page is stale (%q) while its master serves: %s", stale, js[string](t, ctx, `document.getElementById("stale").textContent`))
	}

	// A refusal of a call sent without the token that arrives after the
	// token was entered (a refresh in flight while the user types) must
	// not ask again. Responses are held back 300 ms so that order is
	// certain; the three reads are the page's own api calls, and their
	// refusals have been handled once they settle.
	js[chromedp.Void](t, ctx, `sessionStorage.removeItem("gear.token");
		window.__fetch = window.fetch;
		window.fetch = (...a) => window.__fetch(...a).finally(() => new Promise(r => setTimeout(r, 300)));
		window.__reads = null;
		Promise.allSettled(["/api/v1/masters", "/api/v1/workers", "/api/v1/apps"].map(p => api("GET", p)))
			.then(rs => { window.__reads = rs.map(r => r.status === "rejected" ? r.reason.status : 200); });
		document.getElementById("token").value = "`+token+`";
		document.getElementById("token-form").requestSubmit(); null`)
	waitPage(t, ctx, 10*time.Second, "the reads sent without the token to settle", `window.__reads !== null`)
	js[chromedp.Void](t, ctx, `window.fetch = window.__fetch; null`)
	if got := js[[]int](t, ctx, `window.__reads`); len(got) != 3 || got[0] != 401 || got[1] != 401 || got[2] != 401 {
		t.Fatalf("reads without the token answered %v, want three 401s", got)
	}
	if !js[bool](t, ctx, `document.getElementById("token-form").hidden`) {
		t.Fatalf("the token form reopened for refusals of calls sent before the token was entered: %q",
			js[string](t, ctx, `document.getElementById("token-error").textContent`))
	}

	// A rolling restart from the page: without the token in this tab the
	// call is refused and the page asks for it; with it, it goes through.
	js[chromedp.Void](t, ctx, `sessionStorage.removeItem("gear.token"); null`)
	click := `document.querySelector('button[data-act="restart"][data-app="` + id + `"]').click(); null`
	js[chromedp.Void](t, ctx, click)
	enterToken()
	waitPage(t, ctx, 10*time.Second, "the token form to close", `document.getElementById("token-form").hidden`)
	js[chromedp.Void](t, ctx, click)
	waitPage(t, ctx, 10*time.Second, "the restart to be accepted", `document.getElementById("action-result").textContent.includes("restart requested")`)
	waitFor(t, 30*time.Second, "generation 1 running after the page's restart", func() bool {
		a := c.app(id)
		return a != nil && a.Generation == 1 && len(a.Executors) == 1 && a.Executors[0].Observed == 1 && a.Executors[0].State == "RUNNING"
	})
	// Scale from the page (to the same count: the machine may have no
	// other free core).
	js[chromedp.Void](t, ctx, `document.querySelector('input[data-scale="`+id+`"]').value = "1"; document.querySelector('button[data-act="scale"][data-app="`+id+`"]').click(); null`)
	waitPage(t, ctx, 10*time.Second, "the scale to be accepted", `document.getElementById("action-result").textContent.includes("scale requested")`)

	// A kill from the CLI shows on the page.
	start := time.Now()
	c.mustGear("app", "kill", id)
	waitPage(t, ctx, 10*time.Second, "the kill on the page",
		`document.querySelector('div.app[data-app="`+id+`"][data-state="KILLED"]')`)
	t.Logf("a kill made from the CLI showed on the page after %s", time.Since(start).Round(time.Millisecond))
	screenshot(t, ctx, shots, "dashboard.png")

	// Stop the master: the page must say its data is stale.
	c.kill("master0", syscall.SIGTERM)
	took := waitPage(t, ctx, 15*time.Second, "the stale indicator",
		`document.body.dataset.stale === "1" && !document.getElementById("stale").hidden`)
	why := js[string](t, ctx, `document.getElementById("stale").textContent`)
	if !strings.Contains(why, "STALE") {
		t.Errorf("stale banner reads %q", why)
	}
	// It stays on through the page's next refreshes (every 3 s), which fail.
	waitPage(t, ctx, 15*time.Second, "a failed data call in the stale banner",
		`document.getElementById("stale-why").textContent.includes("Failed to fetch")`)
	if js[string](t, ctx, `document.body.dataset.stale`) != "1" {
		t.Fatal("the stale indicator went off while the master is down")
	}
	t.Logf("stale indicator on %s after the master stopped: %s", took.Round(time.Millisecond), why)
	screenshot(t, ctx, shots, "dashboard-stale.png")
}
