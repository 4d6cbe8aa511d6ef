#!/usr/bin/env bash
# s9-backlog: the listen backlog is 8 connections, not 4096 (ss shows it in Send-Q)
# needs: 01-blocking
. "$(dirname "$0")/lib.sh"
ex_start s "$B/01-blocking" --quiet
# For a listening socket ss prints the backlog in Send-Q (the 4th field
# with -H: State Recv-Q Send-Q Local Peer).
q=$(ss -ltnH "sport = :$PORT" | awk '{ print $3; exit }')
msg="01's listening socket has a backlog of '${q:-?}' (ss -ltn Send-Q; want 8)"
ex_verdict "$msg" [ "$q" = 8 ]
