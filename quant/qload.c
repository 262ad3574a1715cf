typedef int sr_placeholder_qload;
