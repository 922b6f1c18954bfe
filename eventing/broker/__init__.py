"""The local Knative Broker: ingress app, dispatch per Trigger, delivery, Trigger loading, its settings."""
