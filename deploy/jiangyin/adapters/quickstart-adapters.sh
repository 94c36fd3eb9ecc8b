# Sourced by deploy/quickstart.sh once the gateway runs and the demo is done: starts the
# Jiangyin adapters from this folder with synthetic local systems, feeds them records
# and shows the cases flowing. Uses ROOT RUN PORT BUILD CPXCTL say PIDS; sets PG_CTL
# (so quickstart's stop() stops PostgreSQL) and PG_CONNINFO.
ADAPTER=$BUILD/adapters/cpx-adapter
CONF=$ROOT/deploy/jiangyin/adapters
A=$RUN/adapters
mkdir -p "$A" "$RUN/var"

# ---- configuration: the shipped files, with this run's ports ----------------------------
# The configs name ../keys and ../var/...: copied into RUN/adapters they point at RUN.
# Webhooks 848N -> PORT+10+N, callbacks 948N -> PORT+20+N, the gateway 7400 -> PORT.
PGPORT=$((PORT + 30))
PGSOCK=$RUN/pg/sock
PG_CONNINFO="host=$PGSOCK port=$PGPORT dbname=police110 user=postgres connect_timeout=5"
for f in "$CONF"/*.yaml; do
  sed -e "s|tcp://127.0.0.1:7400|tcp://127.0.0.1:$PORT|" \
      -e "s|127.0.0.1:848\([0-9]\)|127.0.0.1:PORT1\1|; s|127.0.0.1:948\([0-9]\)|127.0.0.1:PORT2\1|" \
      -e "s|conninfo: .*|conninfo: \"$PG_CONNINFO\"|" \
      -e "s|heartbeat_ms: 5000|heartbeat_ms: 1000|; s|status_every_ms: 30000|status_every_ms: 5000|" \
      "$f" > "$A/$(basename "$f")"
  # PORT1N / PORT2N -> numbers (sed cannot add)
  for n in 1 2 3 4; do
    sed -i -e "s|PORT1$n|$((PORT + 10 + n))|; s|PORT2$n|$((PORT + 20 + n))|" "$A/$(basename "$f")"
  done
done
CONFIGS=()
for f in "$A"/*.yaml; do grep -q '^connector:' "$f" && CONFIGS+=("$f"); done
dept_of() { sed -n 's/^department: *//p' "$1"; }
for f in "${CONFIGS[@]}"; do
  t=$(sed -n 's|^ *token_file: *\.\./keys/||p' "$f" | sed 's/ .*//')
  [ -n "$t" ] && [ ! -f "$RUN/keys/$t" ] && (umask 077; openssl rand -hex 24 > "$RUN/keys/$t")
done

# ---- the POLICE 110 database: PostgreSQL in RUN/pg, unix socket only -------------------
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
AS_PG=()
[ "$(id -u)" -eq 0 ] && AS_PG=(runuser -u postgres --)
start_pg() {
  [ -x "$PGBIN/pg_ctl" ] || { echo "PostgreSQL not installed: no POLICE adapter"; return 1; }
  mkdir -p "$RUN/pg"
  if [ ${#AS_PG[@]} -gt 0 ]; then
    chown postgres: "$RUN/pg"
    chmod 700 "$RUN/pg"
    "${AS_PG[@]}" test -x "$RUN/pg" || {
      echo "the postgres user cannot reach $RUN (a parent folder is closed to it): no POLICE adapter"
      return 1; }
  fi
  if [ ! -f "$RUN/pg/data/PG_VERSION" ]; then
    "${AS_PG[@]}" "$PGBIN/initdb" -D "$RUN/pg/data" -A trust -U postgres -E UTF8 --locale=C >/dev/null
    "${AS_PG[@]}" mkdir -p "$PGSOCK"
    printf "listen_addresses = ''\nport = %d\nunix_socket_directories = '%s'\n" "$PGPORT" "$PGSOCK" \
      >> "$RUN/pg/data/postgresql.conf"
    # a fresh database: the police spool's cursor belongs to the old one
    rm -rf "$RUN/var/police"
  fi
  sed -i "s/^port = .*/port = $PGPORT/" "$RUN/pg/data/postgresql.conf"
  PG_CTL="${AS_PG[*]} $PGBIN/pg_ctl -D $RUN/pg/data -w"
  $PG_CTL -l "$RUN/pg/pg.log" start >/dev/null
  PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h "$PGSOCK" -p "$PGPORT" -U postgres)
  "${PSQL[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'police110'" | grep -q 1 ||
    "${PSQL[@]}" -d postgres -c "CREATE DATABASE police110" >/dev/null
  "${PSQL[@]}" -d police110 -f "$CONF/police-110.sql" >/dev/null 2>&1
}

say "the Jiangyin adapters (configs: $A, logs: $RUN/var/*.log)"
have_pg=0
start_pg && have_pg=1

# the local systems behind the http adapters: a callback receiver per webhook adapter
CB_ARGS=()
for f in "${CONFIGS[@]}"; do
  grep -q '^connector: http' "$f" || continue
  d=$(dept_of "$f")
  port=$(sed -n 's|^ *callback: *http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$f")
  t=$(sed -n 's|^ *token_file: *\.\./keys/||p' "$f" | sed 's/ .*//')
  CB_ARGS+=("$port:$RUN/keys/$t:$RUN/var/${d,,}-callback")
done
/usr/bin/python3 "$CONF/local-callback.py" "${CB_ARGS[@]}" >>"$RUN/var/callback.log" 2>&1 &
PIDS+=($!)

for f in "${CONFIGS[@]}"; do
  d=$(dept_of "$f")
  if grep -q '^connector: sql' "$f" && [ $have_pg = 0 ]; then continue; fi
  "$ADAPTER" --config "$f" >>"$RUN/var/$(basename "$f" .yaml).log" 2>&1 &
  PIDS+=($!)
  printf '  %-16s %-5s pid %s\n' "$d" "$(sed -n 's/^connector: *//p' "$f")" "$!"
done

# ---- synthetic local records ----------------------------------------------------------
# GB 11643 check digit, so ID numbers pass the gateway's validation
idnum() {
  local body=$1 w=(7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2) s=0 i
  for i in $(seq 0 16); do s=$((s + ${body:$i:1} * ${w[$i]})); done
  printf '%s%s' "$body" "$(echo 10X98765432 | cut -c$((s % 11 + 1)))"
}
today=$(date +%Y-%m-%d)
inbox() { echo "$RUN/var/$1/exchange/inbox"; }
drop() {  # drop FOLDER NAME: content on stdin, written aside then renamed in
  local dir; dir=$(inbox "$1")
  for _ in $(seq 50); do [ -d "$dir" ] && break; sleep 0.1; done
  cat > "$dir/.$2" && mv "$dir/.$2" "$dir/$2"
}
sleep 1

# POLICE: five 110 incidents involving minors
if [ $have_pg = 1 ]; then
  n0=$("${PSQL[@]}" -d police110 -tAc "SELECT count(*) FROM incidents_110")
  "${PSQL[@]}" -d police110 >/dev/null <<SQL
INSERT INTO incidents_110 (incident_no, minor_name, minor_id, sex, birth_date, town_code, address, officer,
                           harm_codes, immediate, summary) VALUES
 ('JY110-$today-$((n0 + 1))', '陈小雨', '$(idnum 32028120140312004)', 'F', '2014-03-12', 'TOWN_HUASHI',
  '华士镇华西村三组12号', '王警官', 'DV', true, '邻居报警：女孩被父亲殴打，脸部有淤青，现场已制止'),
 ('JY110-$today-$((n0 + 2))', '刘小军', NULL, 'M', '2016-07-01', 'TOWN_ZHOUZHUANG',
  '周庄镇长寿村', '李警官', 'AN', true, '巡逻发现男童独自在家三天，父母联系不上'),
 ('JY110-$today-$((n0 + 3))', '张小花', '$(idnum 32028120110905002)', 'F', '2011-09-05', 'TOWN_CHENGJIANG',
  '澄江街道人民路88号', '赵警官', 'BG', false, '火车站附近发现未成年人被带领乞讨'),
 ('JY110-$today-$((n0 + 4))', '王小明', NULL, 'M', '2013-01-20', 'TOWN_HUASHI',
  '华士镇向阳村', '王警官', 'AB,IN', true, '学校报警：学生身上多处伤痕，疑似长期虐待'),
 ('JY110-$today-$((n0 + 5))', '吴小丽', NULL, 'F', '2015-11-11', 'TOWN_QINGYANG',
  '青阳镇璜塘村', '孙警官', 'SX', true, '家长报警：女童疑遭性侵，已送医');
SQL
fi

# EDUCATION: this week's dropout roster, GB18030 as the student-status system exports it
{
  echo "学籍号,姓名,性别,身份证号,出生日期,学校,所属镇街,村社区,家庭住址,辍学日期,辍学原因,是否留守,联系教师,备注"
  echo "JY2026$RANDOM,李小龙,男,$(idnum 32028120120315001),2012-03-15,江阴市华士实验中学,华士镇,华西村,\"华士镇华西村5组\",$today,家庭经济困难,是,周老师,连续两周未到校"
  echo "JY2026$RANDOM,赵小燕,女,,2011-08-02,江阴市周庄中学,周庄镇,长寿村,\"周庄镇长寿村18号\",$today,,否,钱老师,家长称孩子外出打工"
  echo "JY2026$RANDOM,孙小宝,男,,2013-05-30,江阴市青阳中学,青阳镇,璜塘村,,$today,厌学,是,吴老师,"
} | iconv -f UTF-8 -t GB18030 | drop education "dropouts-$today.csv"

# WOMENS_FED: the left-behind children register
drop womens-fed "left-behind-$today.csv" <<CSV
登记编号,姓名,身份证号,性别,出生日期,镇街代码,村社区,登记人,困境类型,父亲情况,母亲情况,情况说明,登记日期
FL-$today-1,周小梅,$(idnum 32028120150101002),女,2015-01-01,TOWN_HUASHI,华西村,妇联干部陈红,监护缺失,服刑,失踪,父亲服刑，母亲离家多年未归，由年迈祖母照顾,$today
FL-$today-2,钱小虎,,男,2012-06-18,TOWN_ZHOUZHUANG,长寿村,妇联干部陈红,家庭贫困,,,父母在外务工收入低，孩子由外婆照顾,$today
CSV

# JUSTICE: a release notice (the scattered-orphan allowance stops when a parent is back)
drop justice "release-$today.jsonl" <<JSON
{"notice_no":"SF-$today-1","parent_role":"父亲","parent_id_number":"$(idnum 32028119850203001)","parent_name":"周大勇","kind":"刑满释放","release_date":"$today","minor_id_number":"$(idnum 32028120150101002)"}
JSON

# HEALTH and CIVIL_AFFAIRS: their systems POST to the webhooks
webhook() {  # webhook CONFIG JSON IDEMPOTENCY-KEY
  local f=$A/$1 url tok
  url="http://$(sed -n 's/^ *listen: *\([0-9.:]*\).*/\1/p' "$f")/v1/messages"
  tok=$(cat "$RUN/keys/$(sed -n 's|^ *token_file: *\.\./keys/||p' "$f" | sed 's/ .*//')")
  for _ in $(seq 50); do curl -s -o /dev/null "$url" && break; sleep 0.1; done
  printf '  POST %-40s -> ' "$url"
  curl -s -w ' (HTTP %{http_code})\n' -H "Authorization: Bearer $tok" -H "Idempotency-Key: $3" \
       -H 'Content-Type: application/json' --data-binary "$2" "$url"
}
now_ms=$(($(date +%s) * 1000))
webhook health.yaml '{"priority":"IMMEDIATE","discovery_report":{"reporter":{"role":"DOCTOR","duty_to_report":true,"name":"李医生","organisation":"江阴市人民医院"},"channel":"HOSPITAL","minor":{"id_unknown_reason":"NOT_REGISTERED","name":"无名女婴","sex":"FEMALE","birth_date":"'"$today"'","town":"TOWN_CHENGJIANG"},"categories":[{"category":"HARMED","harm_types":["ABANDONMENT"]}],"immediate_danger":true,"circumstances":["ABANDONED_INFANT"],"observation":{"what":"产科病房发现被遗弃女婴，家属已离院","observed_ms":'"$((now_ms - 3600000))"',"place":"江阴市人民医院产科"},"local_ref":"HIS-'"$today"'-1"}}' "HIS-$today-1"
webhook civil-affairs.yaml '{"priority":"URGENT","discovery_report":{"reporter":{"role":"NEIGHBOUR","name":"匿名"},"channel":"HOTLINE","minor":{"id_unknown_reason":"REPORTER_DOES_NOT_KNOW","name":"小杰","sex":"MALE","birth_date":"2014-01-01","town":"TOWN_XUXIAKE"},"categories":[{"category":"STREET_OR_ORPHAN","street":["BEGGING_OR_ROAMING"]}],"observation":{"what":"热线来电：男孩连续几晚在桥洞下过夜","observed_ms":'"$((now_ms - 7200000))"',"place":"徐霞客镇"},"local_ref":"HL-'"$today"'-1"}}' "HL-$today-1"

# ---- watch it flow ------------------------------------------------------------------------
settled() {  # every dropped file done, every pending submission acknowledged
  local f
  for f in "${CONFIGS[@]}"; do
    [ -n "$(ls -A "$RUN/var/$(basename "$f" .yaml)/exchange/inbox" 2>/dev/null)" ] && return 1
    "$ADAPTER" --config "$f" --status 2>/dev/null | grep -q '^pending=0$' || return 1
  done
  return 0
}
for _ in $(seq 150); do settled && break; sleep 0.2; done

# a town office follows up on a case of the day: a home-visit record (GBK, as the
# town's office software writes it) naming a case the demo opened in its town
case_id=$(grep TOWN_HUASHI "$RUN/demo.txt" 2>/dev/null | grep -o 'JY-[0-9]*-[0-9]*' | head -n 1)
if [ -n "$case_id" ]; then
  printf '走访编号,案件编号,走访日期,走访人,结果,记录,建议结案\nHV-%s-1,%s,%s,村社区监督员张强,关注,已上门走访，孩子暂由奶奶照看，需持续关注,否\n' \
    "$today" "$case_id" "$today" | iconv -f UTF-8 -t GBK | drop town-huashi "home-visits-$today.csv"
  for _ in $(seq 100); do settled && break; sleep 0.2; done
fi
# and everything the gateway holds for the adapters' departments has reached their local
# systems (the webhook adapters' callbacks confirm one POST at a time, which takes a
# while on a slow or sanitizer build)
ADEPTS=$(for f in "${CONFIGS[@]}"; do dept_of "$f"; done | paste -sd'|')
delivered() {
  ! "$CPXCTL" status --data "$RUN/data" 2>/dev/null |
    grep -E "^dept=($ADEPTS) " | grep -qv ' queued=0 '
}
for _ in $(seq 300); do delivered && break; sleep 0.2; done

say "local records in, acknowledged by the gateway"
for f in "${CONFIGS[@]}"; do
  d=$(dept_of "$f")
  st=$("$ADAPTER" --config "$f" --status 2>/dev/null | tr '\n' ' ')
  printf '  %-16s %s\n' "$d" "$(echo "$st" | grep -o 'spooled=[0-9]* .*acked=[0-9]* nacked=[0-9]* delivered=[0-9]* confirmed=[0-9]* failed=[0-9]* pending=[0-9]*' | sed 's/sent=[0-9]* resent=[0-9]* //')"
done
for r in "$RUN"/var/*/exchange/done/*.receipt; do
  [ -f "$r" ] || continue
  printf '  receipt %s: %s\n' "${r#"$RUN"/var/}" "$(tr -d '\n ' < "$r" | sed 's/"completed_ms":[0-9]*,//')"
done
for e in "$RUN"/var/*/exchange/rejected/*.errors; do
  [ -f "$e" ] && sed "s|^|  rejected ${e#"$RUN"/var/}: |" "$e"
done

say "deliveries to the agencies' own systems"
show_delivery() {  # one JSON delivery -> a line
  /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); b=d.get("body",{})
m=b.get("minor",{}); o=b.get("observation",{})
print("from %-14s %-9s %-18s %s %s" % (d.get("sender"), d.get("priority",""), d.get("body_kind"),
      m.get("name",""), (o.get("what") or b.get("notes") or "")[:24]))' "$1"
}
for o in "$RUN"/var/*/exchange/outbox/*.json; do
  [ -f "$o" ] && printf '  %-16s outbox/   %s\n' "${o#"$RUN"/var/}" "$(show_delivery "$o")" | sed 's|/exchange/outbox/[^ ]*||' 
done
for o in "$RUN"/var/*-callback/*.json; do
  [ -f "$o" ] && printf '  %-16s callback  %s\n' "${o#"$RUN"/var/}" "$(show_delivery "$o")" | sed 's|-callback/[^ ]*||' 
done
if [ $have_pg = 1 ]; then
  "${PSQL[@]}" -d police110 -tAc "SELECT format('  %-16s %-9s from %-14s %-9s %-18s %s %s', 'police', 'db table', sender, priority, body_kind, delivery->'body'->'minor'->>'name', left(delivery->'body'->'observation'->>'what', 24)) FROM cpx_deliveries ORDER BY id DESC LIMIT 12"
fi

say "the gateway's view of the adapters' departments"
"$CPXCTL" status --data "$RUN/data" 2>/dev/null | grep -E "^accepted=|^dept=($ADEPTS) " || true
