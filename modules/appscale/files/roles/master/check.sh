# appscale, role controller/master: the deployment answers.
cd "$CLOUD_DIR"
appscale status >/dev/null
