"""Pure rules of the portal: app bundles, form validation, session cards."""
