package master

import (
	"embed"
	"io/fs"
	"net/http"
)

// dashboardFiles is the web dashboard: plain HTML, CSS and JavaScript,
// no build step. It reads the same JSON API as the CLI, follows
// GET /api/v1/events to update live, and sends the cluster token (asked
// for when a call answers 401, kept in the browser's sessionStorage) as
// the CLI does.
//
//go:embed dashboard
var dashboardFiles embed.FS

var dashboardFS, _ = fs.Sub(dashboardFiles, "dashboard")

// handleDashboard serves the dashboard's page at /.
func (m *Master) handleDashboard(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	b, err := fs.ReadFile(dashboardFS, "index.html")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}

// handleDashboardAsset serves the dashboard's script and style under /ui/.
func (m *Master) handleDashboardAsset(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-cache")
	http.StripPrefix("/ui/", http.FileServerFS(dashboardFS)).ServeHTTP(w, r)
}
