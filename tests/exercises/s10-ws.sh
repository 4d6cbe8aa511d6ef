#!/usr/bin/env bash
# s10-ws: examples/ws_frame computes Sec-WebSocket-Accept and sends its frames unmasked, as a WebSocket server must
# needs: examples/ws_frame
. "$(dirname "$0")/lib.sh"
# RFC 6455's example key and one more (its accept value computed with
# Python's hashlib: base64(SHA-1(key + GUID))).
out=$(timeout 10 "$B/examples/ws_frame" 2>&1)
other=$(timeout 10 "$B/examples/ws_frame" x3JJHMbDL1EzLkh9GBhXDw== 2>&1 | head -1)
accept=$(sed -n 's/^accept for dGhlIHNhbXBsZSBub25jZQ==: //p' <<<"$out")
frame=$(sed -n 's/^server frame for "Hello": //p' <<<"$out")
reads=$(sed -n 's/^a client reads it: //p' <<<"$out")
msg="accept '${accept:-?}' (want s3pPLMBiTxaQ9kYGzzhZRbK+xOo=), for a second key '${other#*: }' (want HSmrc0sMlYUkAGmm5OPpG2HaGWk=); the server's frame for \"Hello\": '${frame:-?}' (want 81 05 48 65 6c 6c 6f: unmasked), which a client reads as: '${reads:-?}' (want accepted)"
[ "$accept" = s3pPLMBiTxaQ9kYGzzhZRbK+xOo= ] && [ "${other#*: }" = HSmrc0sMlYUkAGmm5OPpG2HaGWk= ] &&
    [ "$frame" = "81 05 48 65 6c 6c 6f" ] && [ "$reads" = 'text "Hello", unmasked: accepted' ] && ex_pass "$msg"
ex_fail "$msg"
