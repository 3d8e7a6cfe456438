#!/usr/bin/env bash
# Example requests against s2s-guard (Envoy on :10000 from docker-compose, or the
# test host's `serve` mode): one line per outcome. Usage: requests.sh [BASE_URL]
set -uo pipefail
BASE=${1:-http://127.0.0.1:10000}
ADJUST=v8s5opi0zs45607l8h8c48wak2vxb5oe
SWAARM=s2sTokenForTheStoreApp
JITSU_CLIENT=bd33c5fa-d69f-11ea-87d0-0242ac130003
JITSU_SERVER=5f15eba2-db58-11ea-87d0-0242ac130003
EV="s2s=1&app_token=abc123kuvada7&event_token=xyzklm&gps_adid=11110111-2345-6789-1122-000000005678"

req() { # name, curl args...
  local name=$1; shift
  local out status body
  out=$(curl -s -m 10 -w '\n%{http_code}' "$@") || { printf '%-52s %s\n' "$name" "curl failed"; return; }
  status=${out##*$'\n'}
  body=${out%$'\n'*}
  if [[ $body == *'"collector": "echo"'* || $body == *'"collector":"echo"'* ]]; then
    local id
    id=$(printf '%s' "$body" | grep -o '"x-s2s-guard-token-id": *"[^"]*"' | sed 's/.*: *"//; s/"$//')
    printf '%-52s %s forwarded  token_id=%s\n' "$name" "$status" "${id:--}"
  else
    printf '%-52s %s local      %s\n' "$name" "$status" "$(printf '%s' "$body" | head -c 70)"
  fi
}

req "Adjust event, Bearer token"          -X POST -H "Authorization: Bearer $ADJUST" "$BASE/event?$EV"
req "Adjust event, no token"              -X POST "$BASE/event?$EV"
req "Adjust event, wrong token"           -X POST -H "Authorization: Bearer nope" "$BASE/event?$EV"
req "Adjust session, token lacks scope"   -X POST -H "Authorization: Bearer $ADJUST" "$BASE/session?s2s=1&app_token=abc123kuvada7"
req "Swaarm postback, s2s_token"          "$BASE/postback?s2s_token=$SWAARM&user_id=0000-AAAA-BBBB-CCCC&event_id=register"
req "Swaarm postback, raw Authorization"  -X POST -H "Authorization: $SWAARM" "$BASE/postback?user_id=u1&event_id=purchase"
req "Swaarm postback, missing event_id"   "$BASE/postback?s2s_token=$SWAARM&user_id=u1"
req "Swaarm postback, two tokens"         -H "Authorization: other" "$BASE/postback?s2s_token=$SWAARM&user_id=u&event_id=e"
req "Jitsu browser event, allowed origin" -X POST -H "Origin: https://shop.abc.com" "$BASE/api/v1/event?token=$JITSU_CLIENT"
req "Jitsu browser event, other origin"   -X POST -H "Origin: https://evilabc.com" "$BASE/api/v1/event?token=$JITSU_CLIENT"
req "Jitsu s2s event, server secret"      -X POST -H "X-Auth-Token: $JITSU_SERVER" "$BASE/api/v1/s2s/event"
req "Jitsu s2s event, client secret"      -X POST -H "X-Auth-Token: $JITSU_CLIENT" "$BASE/api/v1/s2s/event"
req "Unknown path"                        "$BASE/healthz"
