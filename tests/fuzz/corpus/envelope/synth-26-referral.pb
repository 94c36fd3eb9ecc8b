
���bޫr��!J���CIVIL_AFFAIRSJUSTICE"JY-2026-153060(��Ձ�30@H�k
JUSTICEE孩子疑似遭受侵害，需依法调查处置并提供法律援助 �调�3(2MZ-REF-3103403