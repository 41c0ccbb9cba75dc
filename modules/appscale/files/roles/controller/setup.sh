# appscale, role controller (default deployment): the AppScalefile of the placement (common.sh).
appscale_write_file
