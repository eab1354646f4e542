package master

import "net/http"

// handleDashboard serves a small read-only web page over the JSON API.
func (m *Master) handleDashboard(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(dashboardHTML))
}

const dashboardHTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>gear</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#eee}</style></head>
<body><h1>gear</h1>
<h2>Masters</h2><table id="masters"></table>
<h2>Workers</h2><table id="workers"></table>
<h2>Applications</h2><table id="apps"></table>
<script>
function row(cells, th){return "<tr>"+cells.map(c=>(th?"<th>":"<td>")+String(c).replace(/</g,"&lt;")+(th?"</th>":"</td>")).join("")+"</tr>"}
async function load(){
  try{
    const ms=await (await fetch("/api/v1/masters")).json();
    document.getElementById("masters").innerHTML=row(["addr","state","term","leader","quorum"],1)+ms.map(m=>row([m.addr,m.state,m.term,m.leader,m.quorum])).join("");
    const ws=await (await fetch("/api/v1/workers")).json();
    document.getElementById("workers").innerHTML=row(["id","addr","alive","cpus","free","executors"],1)+ws.map(w=>row([w.id,w.addr,w.alive,w.cpus.join(","),w.free_cpus.join(","),w.executors.length])).join("");
    const as=await (await fetch("/api/v1/apps")).json();
    document.getElementById("apps").innerHTML=row(["id","name","state","executors"],1)+as.map(a=>row([a.id,a.name,a.state,a.executors.map(e=>e.id+" "+e.state+" pid "+e.pid+" cpus "+e.cpus.join(",")).join("; ")])).join("");
  }catch(e){document.body.dataset.error=e}
}
load();setInterval(load,2000);
</script></body></html>`
