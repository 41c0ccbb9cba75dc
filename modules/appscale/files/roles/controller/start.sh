# appscale, role controller: the AppScale tools bring the deployment up (common.sh).
appscale_up
