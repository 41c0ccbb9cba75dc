# appscale, role controller: the deployment answers (common.sh).
appscale_check
