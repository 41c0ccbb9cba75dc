# appscale, role controller/master: `appscale up` with the AppScalefile of the setup, by the
# AppScale tools of this VM's image (not part of the lab's image: AppScale is not packaged by
# Debian; the run then fails here, saying so).
command -v appscale >/dev/null || { echo "the AppScale tools are not installed in this image" >&2; exit 1; }
cd "$CLOUD_DIR"
appscale status >/dev/null 2>&1 || appscale up
