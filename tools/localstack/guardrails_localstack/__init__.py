"""LocalStack host-mode plugins used by the guardrails.ec2 test harness.

Two gaps keep LocalStack community from running the stop -> restart loop without Docker:
Lambda functions need a container runtime, and EC2 (moto underneath) publishes no
state-change events. The plugins here fill both, and add a fault switch so tests can make
StartInstances fail on purpose.
"""
