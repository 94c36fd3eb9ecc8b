# Turns the dashboard page into a C array (cmake -DIN=... -DOUT=... -P embed.cmake), so
# the gateway serves it with no files to install and nothing fetched from elsewhere.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR bytes "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
file(WRITE "${OUT}"
  "/* generated from gateway/dashboard/index.html by embed.cmake; do not edit */\n"
  "#include <stddef.h>\n"
  "const unsigned char cpx_gw_dashboard_html[] = {${body} 0x00};\n"
  "const size_t cpx_gw_dashboard_html_len = ${bytes};\n")
