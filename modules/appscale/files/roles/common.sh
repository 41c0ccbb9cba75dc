# appscale: shell functions shared by the head's steps (prepended to each step).

# appscale, role controller (default deployment) or master (custom): the AppScalefile of the
# placement, written in $CLOUD_DIR for the AppScale tools on this VM. Every role's addresses
# come from the facts; the admin password is derived from the cloud's guest key (app_password
# does not travel to guests: secrets never are in the spec).
appscale_write_file() {
f="$CLOUD_DIR/AppScalefile"
list() { # a YAML list of addresses, or nothing when the role is not declared
  for ip in $1; do echo "  - $ip"; done
}
pw=$(python3 - "$CLOUD_DIR/cloud.key" <<'PY'
import hashlib, hmac, sys
key = open(sys.argv[1], 'rb').read().strip()
print(hmac.new(key, b'appscale-admin-password', hashlib.sha256).hexdigest()[:24])
PY
)
{
  echo "# AppScalefile of cloud $CLOUD_NAME, written by its $CLOUD_ROLE's setup: do not edit."
  echo "ips_layout:"
  if [ -n "${CLOUD_IPS_CONTROLLER:-}" ]; then
    echo "  controller: ${CLOUD_IPS_CONTROLLER%% *}"
    [ -z "${CLOUD_IPS_SERVERS:-}" ] || { echo "  servers:"; list "$CLOUD_IPS_SERVERS" | sed 's/^/  /'; }
  else
    echo "  master: ${CLOUD_IPS_MASTER%% *}"
    for role in appengine database zookeeper memcache open; do
      ips=$(eval "echo \"\${CLOUD_IPS_$(echo "$role" | tr a-z A-Z):-}\"")
      [ -z "$ips" ] || { echo "  $role:"; list "$ips" | sed 's/^/  /'; }
    done
    [ -z "${CLOUD_IPS_LOGIN:-}" ] || echo "  login: ${CLOUD_IPS_LOGIN%% *}"
  fi
  [ -z "${CLOUD_OPT_APP_EMAIL:-}" ] || echo "admin_user: $CLOUD_OPT_APP_EMAIL"
  echo "admin_pass: $pw"
  echo "keyname: $CLOUD_NAME"
  echo "verbose: True"
} > "$f.new"
chmod 0600 "$f.new"
mv -f "$f.new" "$f"
}

# `appscale up` with the AppScalefile of the setup, by the AppScale tools of this VM's image (not
# part of the lab's image: AppScale is not packaged by Debian; the run then fails, saying so).
appscale_up() {
command -v appscale >/dev/null || { echo "the AppScale tools are not installed in this image" >&2; exit 1; }
cd "$CLOUD_DIR"
appscale status >/dev/null 2>&1 || appscale up
}

# The deployment answers.
appscale_check() {
cd "$CLOUD_DIR"
appscale status >/dev/null
}
