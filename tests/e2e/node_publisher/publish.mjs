// A service in another language publishing one task straight to RabbitMQ, as
// docs/messages-and-topology.md describes: a `sleep` task to exchange `tasks.sleep`, with the
// task id as message_id, persistent, and the connection's user as user_id (its tenant).
// Exits 0 only once RabbitMQ has confirmed the message, 1 if it did not take it.
//
// Usage: node publish.mjs <amqp url> <task id>
import amqp from "amqplib";

const [url, taskId] = process.argv.slice(2);
if (!url || !taskId) {
  console.error("usage: node publish.mjs <amqp url> <task id>");
  process.exit(2);
}

async function publish() {
  const connection = await amqp.connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    // With `mandatory`, a message no queue would hold comes back (before its confirm).
    let returned = null;
    channel.on("return", (message) => {
      returned = message;
    });
    const body = { payload: { seconds: 0 } };
    channel.publish("tasks.sleep", "sleep", Buffer.from(JSON.stringify(body)), {
      contentType: "application/json",
      persistent: true,
      messageId: taskId,
      appId: "node-publisher",
      userId: decodeURIComponent(new URL(url).username || "guest"),
      mandatory: true,
    });
    await channel.waitForConfirms(); // rejects if RabbitMQ nacks the message
    if (returned !== null) {
      throw new Error("unroutable: no queue is bound to exchange tasks.sleep");
    }
    await channel.close();
  } finally {
    await connection.close();
  }
}

try {
  await publish();
  console.log(taskId);
} catch (error) {
  console.error(`not published: ${error.message}`);
  process.exitCode = 1;
}
