"""The agent's OpenADR 3.1 edge (REST/JSON): OAuth client credentials, its VEN and
resource, a webhook subscription served by the agent itself, events read and re-read,
and the outbox posted as reports. ven/openadr20b/ is its sibling; neither imports the
other, both serve the protocol-neutral agent core (ven/agent.py) through `Link`.
"""
