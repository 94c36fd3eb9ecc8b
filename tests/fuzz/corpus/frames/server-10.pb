ª
#@uôuSùTÌ¾®g#¦÷‘
 discovery_report.minor.id_numbercheck_digit`check digit mismatch (GB 11643 MOD 11-2): the first 17 digits call for '8'; re-check every digit0