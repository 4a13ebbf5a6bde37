"""gateway_agent."""
