"""A Temporal worker for process-webhook's tests and its example server.

It completes the workflow types the tests start through the webhook:

- ``order-intake``: accepts the order; its result is derived from the input
  (``{"accepted": true, "orderNumber": ..., "total": 42.5}``);
- ``wait-sleeper``: sleeps 10 minutes (a wait runs out first);
- ``wait-failing``: fails with an application error.

Run it next to a Temporal server (``temporal server start-dev``)::

    python worker.py --address 127.0.0.1:7233 --task-queue process-webhook

It prints ``worker ready`` once it polls its task queue.
"""

import argparse
import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker


@workflow.defn(name="order-intake")
class OrderIntake:
    @workflow.run
    async def run(self, order: dict) -> dict:
        return {"accepted": True, "orderNumber": order.get("orderNumber"), "total": 42.5}


@workflow.defn(name="wait-sleeper")
class Sleeper:
    @workflow.run
    async def run(self, order: dict) -> dict:
        await asyncio.sleep(timedelta(minutes=10).total_seconds())
        return {"slept": True}


@workflow.defn(name="wait-failing")
class Failing:
    @workflow.run
    async def run(self, order: dict) -> dict:
        raise ApplicationError("the warehouse refused order " + str(order.get("orderNumber")), non_retryable=True)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", default="127.0.0.1:7233")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--task-queue", default="process-webhook")
    args = parser.parse_args()
    client = await Client.connect(args.address, namespace=args.namespace)
    worker = Worker(client, task_queue=args.task_queue, workflows=[OrderIntake, Sleeper, Failing])
    print("worker ready", flush=True)
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
