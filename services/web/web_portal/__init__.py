"""web_portal: the researcher's web portal (log in, launch an application, connect)."""
