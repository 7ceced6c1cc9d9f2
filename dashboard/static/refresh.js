// Auto-refresh: reload the page every 5 s while the box is ticked (remembered per browser), and
// always while a bulk action is still running. The pages work without this script.
(function () {
  var box = document.getElementById("auto-refresh");
  var running = document.querySelector("[data-refresh-while='yes']");
  if (box) {
    box.checked = localStorage.getItem("jobs-auto-refresh") === "1";
    box.addEventListener("change", function () {
      localStorage.setItem("jobs-auto-refresh", box.checked ? "1" : "0");
      if (box.checked) { location.reload(); }
    });
  }
  if (running || (box && box.checked)) {
    setTimeout(function () { location.reload(); }, running ? 1000 : 5000);
  }
})();
