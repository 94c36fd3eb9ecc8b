
��r���>巹�qCIVIL_AFFAIRS	EDUCATION"JY-2026-250479(��Ձ�30@H�a
	EDUCATION9孩子辍学在家，需安排复学并落实教育资助 �����3(2MZ-REF-5851171