// Drives the Vercel AI SDK's default `openai()` provider (the Responses API) through the gateway:
// generateText and streamText, each with one tool the SDK runs itself, over as many steps as the
// model needs. Prints one JSON line per call for the test to check.
//
//   FLOWGATE_URL=http://127.0.0.1:7775/v1 FLOWGATE_KEY=sk-fg-... MODEL=gpt-test node ai_sdk_tool.mjs
import { generateText, jsonSchema, stepCountIs, streamText, tool } from "ai";
import { createOpenAI } from "@ai-sdk/openai";

const openai = createOpenAI({ baseURL: process.env.FLOWGATE_URL, apiKey: process.env.FLOWGATE_KEY });
const calls = [];
const tools = {
  get_weather: tool({
    description: "Weather for a city",
    inputSchema: jsonSchema({
      type: "object",
      properties: { city: { type: "string" } },
      required: ["city"],
      additionalProperties: false,
    }),
    execute: async ({ city }) => {
      calls.push(city);
      return { city, forecast: "sunny" };
    },
  }),
};
const prompt = process.env.PROMPT ?? "What is the weather in Paris?";

const generated = await generateText({ model: openai(process.env.MODEL), tools, prompt, stopWhen: stepCountIs(3) });
console.log(JSON.stringify({
  kind: "generateText",
  text: generated.text,
  steps: generated.steps.length,
  toolCalls: generated.steps.flatMap((s) => s.toolCalls.map((c) => c.toolName)),
  usage: generated.totalUsage,
  executed: calls.splice(0),
}));

const streamed = streamText({ model: openai(process.env.MODEL), tools, prompt, stopWhen: stepCountIs(3) });
const deltas = [];
for await (const delta of streamed.textStream) {
  deltas.push(delta);
}
console.log(JSON.stringify({
  kind: "streamText",
  text: await streamed.text,
  deltas: deltas.length,
  steps: (await streamed.steps).length,
  toolCalls: (await streamed.steps).flatMap((s) => s.toolCalls.map((c) => c.toolName)),
  usage: await streamed.totalUsage,
  executed: calls.splice(0),
}));
